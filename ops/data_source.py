"""Where the data commands (pending, show) read: a stack's Firestore collection.

From the stack's outputs (--stack through the Automation API, or --outputs),
from a running `python -m local` (--local: its emulator, named by
FIRESTORE_EMULATOR_HOST), with --project/--database/--collection overriding
either. Errors Firestore answers with are turned into one line with the fix.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from infra.workflow_env import DEFAULT_COLLECTION, DEFAULT_DATABASE
from local.firestore_emulator import ENV_HOST
from local.workflow_runner import DEFAULT_PROJECT
from ops.errors import OpsError
from ops.stack_outputs import StackOutputs, from_json, from_stack


def collection_of(
    options: argparse.Namespace, project_dir: Path
) -> tuple[firestore.CollectionReference, str]:
    """The collection the options name, and a description of it for messages."""
    if options.local:
        return _local_collection(options)
    if options.project and options.database and options.collection:
        project, database, collection = options.project, options.database, options.collection
    else:
        outputs = outputs_of(options, project_dir)
        project = options.project or outputs.project
        database = options.database or outputs.database
        collection = options.collection or outputs.collection
    try:
        client = firestore.Client(project=project, database=database)
    except auth_errors.DefaultCredentialsError:
        raise OpsError(
            "no Google credentials (application-default credentials are not set up)",
            "gcloud auth application-default login",
        ) from None
    return client.collection(collection), f"{project}/{database}/{collection}"


def _local_collection(options: argparse.Namespace) -> tuple[firestore.CollectionReference, str]:
    host = os.environ.get(ENV_HOST)
    if not host:
        raise OpsError(
            f"--local reads the emulator of a running python -m local, but {ENV_HOST} is not set",
            "python -m local prints the emulator's address: export "
            f"{ENV_HOST}=<that address> and run again",
        )
    project = options.project or DEFAULT_PROJECT
    database = options.database or DEFAULT_DATABASE
    collection = options.collection or DEFAULT_COLLECTION
    client = firestore.Client(
        project=project, database=database, credentials=AnonymousCredentials()
    )
    return client.collection(collection), f"the emulator at {host} ({database}/{collection})"


def outputs_of(options: argparse.Namespace, project_dir: Path) -> StackOutputs:
    """The stack's outputs: from --outputs (a file, or - for stdin) or --stack."""
    if options.outputs is None:
        print(f"reading the outputs of stack {options.stack!r} ...", file=sys.stderr, flush=True)
        return from_stack(options.stack, options.work_dir or project_dir)
    if options.outputs == "-":
        return from_json(sys.stdin.read(), "standard input")
    try:
        text = Path(options.outputs).read_text(encoding="utf-8")
    except OSError as error:
        raise OpsError(
            f"cannot read {options.outputs}: {error.strerror}", "pass an existing file"
        ) from None
    return from_json(text, options.outputs)


@contextlib.contextmanager
def firestore_errors(where: str) -> Iterator[None]:
    """Firestore's refusals as one line each, with what to do."""
    try:
        yield
    except (
        google_errors.ServiceUnavailable,
        google_errors.DeadlineExceeded,
        # What the client library raises once its retries of those run out.
        google_errors.RetryError,
    ) as error:
        raise OpsError(
            f"Firestore did not answer ({where}): {type(error).__name__}",
            "with --local, start python -m local and export FIRESTORE_EMULATOR_HOST; "
            "otherwise check your network and try again",
        ) from None
    except google_errors.PermissionDenied:
        raise OpsError(
            f"your credentials may not read {where}",
            "you need roles/datastore.viewer on the project (gcloud auth "
            "application-default login as a user who has it)",
        ) from None
    except google_errors.NotFound as error:
        raise OpsError(
            f"not found: {where} ({error.message})",
            "check --project/--database, or the stack you named",
        ) from None
    except auth_errors.DefaultCredentialsError:
        raise OpsError(
            "no Google credentials (application-default credentials are not set up)",
            "gcloud auth application-default login",
        ) from None
