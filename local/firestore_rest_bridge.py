"""Serve the Workflows Firestore connector from the Firestore emulator.

workflows-emulator sends ``googleapis.firestore.v1...`` connector calls to the
real Firestore REST API. The emulators on this machine speak gRPC only, so this
bridge answers the REST methods the subworkflows use (``get``, ``batchGet``,
``createDocument``, ``delete``, ``commit``, ``patch``) with gRPC calls. REST and gRPC share the same
protos, so ``google.protobuf.json_format`` converts documents both ways, and
errors become ``requests.HTTPError`` with the HTTP status and the Google error
body Firestore's REST API gives; workflows-emulator turns those into Workflows
error maps (``code``, ``tags``, ``body``) as the real connector does.

Only Commit and BatchGetDocuments are used: the npm emulator implements no
other document RPC, and on real Firestore the REST methods are exactly these
writes (with an ``exists`` precondition for createDocument) and reads.

``patch`` answers with the whole document as written, which its Write does
not return, and the bridge never reads a write back (someone may change the
document the moment it is written). So it reads first, computes what
Firestore stores (``updateMask`` semantics, nested paths included), and
writes exactly that, replacing the document, in one Commit conditioned on
the version it read (or on the caller's own precondition), reading again if
someone wrote in between.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import grpc
import requests
from google.api_core import exceptions as api_exceptions
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport
from google.cloud.firestore_v1.types import common as common_types
from google.cloud.firestore_v1.types import document as document_types
from google.cloud.firestore_v1.types import firestore as firestore_types
from google.cloud.firestore_v1.types import write as write_types
from google.protobuf import json_format, timestamp_pb2

CONNECTOR_PREFIX = "googleapis.firestore.v1.projects.databases.documents."
METHODS = ("get", "batchGet", "createDocument", "delete", "commit", "patch")
REST_ROOT = "https://firestore.googleapis.com/v1/"

# The emulators accept this as an all-powerful credential (rules are bypassed),
# as the Python client library's emulator mode sends it.
_EMULATOR_METADATA = (("authorization", "Bearer owner"),)
_DOCUMENT_NAME = re.compile(r"^projects/([^/]+)/databases/([^/]+)/documents/(.+)$")
_ROOT = re.compile(r"^projects/([^/]+)/databases/([^/]+)/documents$")
_AUTO_ID_ALPHABET = string.ascii_letters + string.digits
_TIMEOUT_SECONDS = 30.0
# Rounds of patch's read and conditional write while others keep writing.
_PATCH_ROUNDS = 5


class FirestoreRestBridge:
    """REST-shaped Firestore document calls answered by a gRPC (emulator) endpoint.

    ``calls`` counts the connector calls by REST method name; ``fail_next``
    makes the next calls of a method fail with a given status, and
    ``drop_next`` makes them fail without an answer (a connection error or a
    timeout), to test how workflows handle Firestore errors.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self._channel = grpc.insecure_channel(host)
        self._client = FirestoreClient(transport=FirestoreGrpcTransport(channel=self._channel))
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self._faults: dict[str, list[_Fault]] = {}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> FirestoreRestBridge:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @staticmethod
    def handles(call_name: str) -> bool:
        return call_name.startswith(CONNECTOR_PREFIX)

    def fail_next(
        self,
        method: str,
        status: int = 503,
        grpc_status: str = "UNAVAILABLE",
        times: int = 1,
        after_applying: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail as Firestore would.

        ``after_applying``: the call takes effect first and only its answer
        is the error, as when a response is lost after the write committed.
        """

        def fault(resource: str) -> Exception:
            return http_error(status, grpc_status, "Injected fault (local bridge).", resource)

        self._inject(method, _Fault(fault, after_applying), times)

    def drop_next(
        self, method: str, error: type[OSError] = ConnectionError, times: int = 1
    ) -> None:
        """Make the next ``times`` calls of ``method`` get no answer: ``error`` is
        ConnectionError or TimeoutError, which workflows-emulator tags as Workflows does."""

        def fault(resource: str) -> Exception:
            return error(f"Injected {error.__name__} calling {resource} (local bridge).")

        self._inject(method, _Fault(fault, after_applying=False), times)

    def _inject(self, method: str, fault: _Fault, times: int) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        with self._lock:
            self._faults.setdefault(method, []).extend([fault] * times)

    def call(self, call_name: str, args: dict[str, Any]) -> Any:
        """Run one connector call (``googleapis.firestore.v1...METHOD``) and return its body."""
        method = call_name.removeprefix(CONNECTOR_PREFIX)
        if not self.handles(call_name) or method not in METHODS:
            raise NotImplementedError(f"{call_name} is not supported by the local Firestore bridge")
        args = _flatten(args)
        with self._lock:
            self.calls[method] += 1
            faults = self._faults.get(method)
            fault = faults.pop(0) if faults else None
        resource = args.get("name") or args.get("parent") or args.get("database") or ""
        if fault is not None and not fault.after_applying:
            raise fault.error(resource)
        handler = getattr(self, "_" + method)
        try:
            answer = handler(args)
        except api_exceptions.GoogleAPICallError as error:
            raise _from_grpc(error, resource) from error
        except json_format.ParseError as error:
            message = f"Invalid JSON payload received. {error}"
            raise http_error(400, "INVALID_ARGUMENT", message, resource) from error
        if fault is not None:
            raise fault.error(resource)
        return answer

    # -- the REST methods ------------------------------------------------

    def _get(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _document_name(args)
        if args.get("transaction") or args.get("readTime"):
            raise http_error(
                400, "INVALID_ARGUMENT", "transaction/readTime: not supported locally", name
            )
        document = self._read(name)
        if document is None:
            raise http_error(404, "NOT_FOUND", f'Document "{name}" not found.', name)
        return _masked(document, _field_paths(args, "mask.fieldPaths"))

    def _batchGet(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """REST's documents.batchGet: several documents of one database in one read.

        https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases.documents/batchGet:
        the body names the documents ("The request will fail if any of the
        document is not a child resource of the given database. Duplicate
        names will be elided."), with an optional ``mask``. The method
        streams BatchGetDocumentsResponse messages, which the REST API (and
        so the Workflows connector,
        https://cloud.google.com/workflows/docs/reference/googleapis/firestore/v1/projects.databases.documents/batchGet)
        answers as one JSON array: ``{"found": document, "readTime"}`` or
        ``{"missing": name, "readTime"}`` for each document. "Documents
        returned by this method are not guaranteed to be returned in the same
        order that they were requested": this stand-in answers them in the
        reverse order, so no caller can come to rely on the request's. A
        transaction or readTime, and a request naming no document (about
        which the reference says nothing), are refused.
        """
        database = _required(args, "database")
        if not re.fullmatch(r"projects/[^/]+/databases/[^/]+", database):
            raise http_error(400, "INVALID_ARGUMENT", f"Invalid database: {database}", database)
        body = dict(args.get("body") or {})
        if body.get("transaction") or body.get("newTransaction") or body.get("readTime"):
            message = "transaction/newTransaction/readTime: not supported locally"
            raise http_error(400, "INVALID_ARGUMENT", message, database)
        names = body.get("documents")
        if not isinstance(names, list) or not names:
            message = "documents: name at least one document (local bridge)"
            raise http_error(400, "INVALID_ARGUMENT", message, database)
        for name in names:
            match = _DOCUMENT_NAME.match(name) if isinstance(name, str) else None
            # A document path has an even number of segments: collection/id pairs.
            if match is None or _database(name) != database or len(match.group(3).split("/")) % 2:
                message = f"Document {name!r} is not a child resource of {database}."
                raise http_error(400, "INVALID_ARGUMENT", message, database)
        request = {"database": database, "documents": list(dict.fromkeys(names))}
        responses = self._client.batch_get_documents(
            request=request, retry=None, timeout=_TIMEOUT_SECONDS, metadata=_EMULATOR_METADATA
        )
        answers = [
            _to_json(firestore_types.BatchGetDocumentsResponse.pb(response))
            for response in responses
        ]
        # The mask, applied here as Firestore applies it (the emulator ignores it).
        paths = (body.get("mask") or {}).get("fieldPaths")
        if paths is not None:
            for answer in answers:
                if "found" in answer:
                    answer["found"] = _masked(answer["found"], [str(path) for path in paths])
        return answers[::-1]

    def _createDocument(self, args: dict[str, Any]) -> dict[str, Any]:
        parent = _required(args, "parent")
        collection_id = _required(args, "collectionId")
        if not (_ROOT.match(parent) or _DOCUMENT_NAME.match(parent)):
            raise http_error(400, "INVALID_ARGUMENT", f"Invalid parent: {parent}", parent)
        body = dict(args.get("body") or {})
        if body.get("name"):
            message = "Document name must not be set."
            raise http_error(400, "INVALID_ARGUMENT", message, parent)
        document_id = args.get("documentId") or "".join(
            secrets.choice(_AUTO_ID_ALPHABET) for _ in range(20)
        )
        name = f"{parent}/{collection_id}/{document_id}"
        document = _document_pb(name, body)
        write = write_types.Write(update=document, current_document={"exists": False})
        try:
            written = self._apply(name, write)
        except api_exceptions.AlreadyExists as error:
            message = f"Document already exists: {name}"
            raise http_error(409, "ALREADY_EXISTS", message, name) from error
        # The created document, as the REST API answers it: what was written,
        # stamped with the commit's time. Not read back: someone else may
        # change or delete it the moment it exists.
        document.create_time.CopyFrom(written)
        document.update_time.CopyFrom(written)
        created = _to_json(document)
        return _masked(created, _field_paths(args, "mask.fieldPaths"))

    def _delete(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _document_name(args)
        write = write_types.Write(delete=name)
        self._set_precondition(write, args, name)
        self._apply(name, write)
        return {}

    def _commit(self, args: dict[str, Any]) -> dict[str, Any]:
        """Several writes, applied atomically (all or none), as REST's documents.commit."""
        database = _required(args, "database")
        if not re.fullmatch(r"projects/[^/]+/databases/[^/]+", database):
            raise http_error(400, "INVALID_ARGUMENT", f"Invalid database: {database}", database)
        body = dict(args.get("body") or {})
        if body.get("transaction"):
            message = "transaction: not supported locally"
            raise http_error(400, "INVALID_ARGUMENT", message, database)
        writes = []
        for write_json in body.get("writes") or []:
            write = write_types.Write.pb(write_types.Write())
            json_format.ParseDict(write_json, write)
            writes.append(write)
        response = self._client.commit(
            request={"database": database, "writes": writes},
            retry=None,
            timeout=_TIMEOUT_SECONDS,
            metadata=_EMULATOR_METADATA,
        )
        return _to_json(firestore_types.CommitResponse.pb(response))

    def _patch(self, args: dict[str, Any]) -> dict[str, Any]:
        """REST's documents.patch: update or insert one document, as Firestore does.

        https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases.documents/patch:
        with ``updateMask`` only the fields it names change ("Fields referenced
        in the mask, but not present in the input document, are deleted";
        others are left unchanged), without one the body replaces the
        document; ``currentDocument`` is a precondition (a failed updateTime
        is FAILED_PRECONDITION, HTTP 400; exists: true on a missing document
        NOT_FOUND, 404). Answers the document as written (``mask`` applies).
        """
        name = _document_name(args)
        body = dict(args.get("body") or {})
        new_fields = _document_pb(name, {"fields": body.get("fields") or {}})
        update_mask = _field_paths(args, "updateMask.fieldPaths")
        condition = _precondition(args, name)
        for _ in range(_PATCH_ROUNDS):
            stored = self._read_pb(name)
            if stored is None and condition is not None and condition.get("exists") is True:
                raise http_error(404, "NOT_FOUND", f"No document to update: {name}", name)
            written = _patched_document(name, stored, new_fields, update_mask)
            # The caller's updateTime or exists: false decides alone; otherwise
            # the write requires the version read, so nothing is lost in between.
            decisive = condition is not None and condition.get("exists") is not True
            own_condition = condition if condition is not None and decisive else _version_of(stored)
            writes = _patch_writes(written, own_condition)
            try:
                when = self._commit_writes(name, writes)
            except api_exceptions.FailedPrecondition:
                if decisive:
                    raise  # the caller's own precondition: Firestore's answer
                continue  # written in between by someone else: read again
            except api_exceptions.AlreadyExists as error:
                message = f"Document already exists: {name}"
                raise http_error(409, "ALREADY_EXISTS", message, name) from error
            written.create_time.CopyFrom(stored.create_time if stored is not None else when)
            written.update_time.CopyFrom(when)
            return _masked(_to_json(written), _field_paths(args, "mask.fieldPaths"))
        message = "The document kept changing (local bridge); try again."
        raise http_error(409, "ABORTED", message, name)

    # -- gRPC plumbing ---------------------------------------------------

    def _commit_writes(self, name: str, writes: list[Any]) -> Any:
        """Apply ``writes`` in one Commit; returns its time (a protobuf Timestamp)."""
        response = self._client.commit(
            request={"database": _database(name), "writes": writes},
            retry=None,
            timeout=_TIMEOUT_SECONDS,
            metadata=_EMULATOR_METADATA,
        )
        return firestore_types.CommitResponse.pb(response).commit_time

    def _read_pb(self, name: str) -> Any:
        """The stored document as a protobuf Document, or None."""
        responses = self._client.batch_get_documents(
            request={"database": _database(name), "documents": [name]},
            retry=None,
            timeout=_TIMEOUT_SECONDS,
            metadata=_EMULATOR_METADATA,
        )
        for response in responses:
            if "found" in response:
                return document_types.Document.pb(response.found)
        return None

    def _set_precondition(self, write: write_types.Write, args: dict[str, Any], name: str) -> None:
        exists = args.get("currentDocument.exists")
        update_time = args.get("currentDocument.updateTime")
        if exists is not None and update_time is not None:
            message = "Only one of currentDocument.exists and currentDocument.updateTime."
            raise http_error(400, "INVALID_ARGUMENT", message, name)
        if exists is not None:
            write.current_document = common_types.Precondition(exists=_boolean(exists))
        elif update_time is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromJsonString(str(update_time))
            write.current_document = common_types.Precondition(update_time=stamp)

    def _apply(self, name: str, write: write_types.Write) -> Any:
        """Apply one write; returns its update time (a protobuf Timestamp)."""
        response = self._client.commit(
            request={"database": _database(name), "writes": [write]},
            retry=None,
            timeout=_TIMEOUT_SECONDS,
            metadata=_EMULATOR_METADATA,
        )
        return write_types.WriteResult.pb(response.write_results[0]).update_time

    def _read(self, name: str) -> dict[str, Any] | None:
        responses = self._client.batch_get_documents(
            request={"database": _database(name), "documents": [name]},
            retry=None,
            timeout=_TIMEOUT_SECONDS,
            metadata=_EMULATOR_METADATA,
        )
        for response in responses:
            if "found" in response:
                return _to_json(document_types.Document.pb(response.found))
        return None


@dataclass(frozen=True)
class _Fault:
    """An injected failure: the error a call raises, made from the resource name."""

    error: Callable[[str], Exception]
    after_applying: bool


def http_error(status: int, grpc_status: str, message: str, resource: str) -> requests.HTTPError:
    """The error requests raises for a Firestore REST error response."""
    response = requests.Response()
    response.status_code = status
    response.reason = HTTPStatus(status).phrase
    response.url = REST_ROOT + resource
    response.headers["Content-Type"] = "application/json; charset=UTF-8"
    response._content = json.dumps(
        {"error": {"code": status, "message": message, "status": grpc_status}}
    ).encode()
    kind = "Client" if status < 500 else "Server"
    return requests.HTTPError(
        f"{status} {kind} Error: {response.reason} for url: {response.url}", response=response
    )


def _from_grpc(error: api_exceptions.GoogleAPICallError, resource: str) -> requests.HTTPError:
    # api_core already maps each gRPC status to its HTTP status (NOT_FOUND 404,
    # ALREADY_EXISTS 409, FAILED_PRECONDITION 400, UNAVAILABLE 503...), the
    # same table Google's REST front end uses.
    status = error.code if isinstance(error.code, int) else 500
    grpc_status = error.grpc_status_code.name if error.grpc_status_code else "UNKNOWN"
    return http_error(status, grpc_status, error.message or str(error), resource)


def _precondition(args: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The caller's currentDocument, as {"exists": bool} or {"updateTime": str}, or None."""
    exists = args.get("currentDocument.exists")
    update_time = args.get("currentDocument.updateTime")
    if exists is not None and update_time is not None:
        message = "Only one of currentDocument.exists and currentDocument.updateTime."
        raise http_error(400, "INVALID_ARGUMENT", message, name)
    if exists is not None:
        return {"exists": _boolean(exists)}
    if update_time is not None:
        return {"updateTime": str(update_time)}
    return None


def _version_of(stored: Any) -> dict[str, Any]:
    """The precondition "still the version read": absent, or that update time."""
    if stored is None:
        return {"exists": False}
    return {"updateTime": stored.update_time.ToJsonString()}


def _patched_document(name: str, stored: Any, new: Any, update_mask: list[str] | None) -> Any:
    """What Firestore stores for a patch of ``stored`` (None: absent) with ``new``'s fields."""
    document = document_types.Document.pb(document_types.Document(name=name))
    if update_mask is None:
        document.fields.MergeFrom(new.fields)  # the body replaces the document
        return document
    if stored is not None:
        document.fields.MergeFrom(stored.fields)
    for path in update_mask:
        _set_path(document.fields, new.fields, path.split("."))
    return document


def _set_path(target: Any, source: Any, parts: list[str]) -> None:
    """Copy the field at ``parts`` from ``source`` to ``target`` (maps), or delete it there."""
    head, rest = parts[0], parts[1:]
    if not rest:
        if head in source:
            target[head].CopyFrom(source[head])
        elif head in target:
            del target[head]
        return
    inner = source[head].map_value.fields if head in source else None
    if inner is None and head not in target:
        return
    target[head].map_value.SetInParent()
    _set_path(target[head].map_value.fields, inner if inner is not None else {}, rest)


def _patch_writes(written: Any, condition: dict[str, Any]) -> list[Any]:
    """The Commit's one write: the whole document as Firestore stores it, under ``condition``.

    Without an update mask a Write replaces the document (the local
    emulator does too: local/firestore-emulator/server.js, dropUnwrittenFields).
    """
    update = write_types.Write.pb(write_types.Write())
    update.update.CopyFrom(written)
    json_format.ParseDict(condition, update.current_document)
    return [update]


def _flatten(args: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Accept ``updateMask: {fieldPaths: [...]}`` as well as ``updateMask.fieldPaths``."""
    flat: dict[str, Any] = {}
    for key, value in args.items():
        if key != "body" and isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _required(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise http_error(400, "INVALID_ARGUMENT", f"Missing required parameter {key}.", "")
    return value


def _document_name(args: dict[str, Any]) -> str:
    name = _required(args, "name")
    match = _DOCUMENT_NAME.match(name)
    # A document path has an even number of segments: collection/id pairs.
    if match is None or len(match.group(3).split("/")) % 2 != 0:
        raise http_error(400, "INVALID_ARGUMENT", f"Invalid document name: {name}", name)
    return name


def _database(name: str) -> str:
    return name.split("/documents", 1)[0]


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _field_paths(args: dict[str, Any], key: str) -> list[str] | None:
    value = args.get(key)
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(path) for path in value]


def _document_pb(name: str, body: dict[str, Any]) -> Any:
    document = document_types.Document.pb(document_types.Document())
    json_format.ParseDict({**body, "name": name}, document)
    return document


def _to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _masked(document: dict[str, Any], paths: list[str] | None) -> dict[str, Any]:
    """Apply a DocumentMask the way Firestore does: only the listed fields remain."""
    if paths is None:
        return document
    fields = document.get("fields", {})
    kept: dict[str, Any] = {}
    for path in paths:
        source, target = fields, kept
        *parents, leaf = path.split(".")
        for part in parents:
            value = source.get(part, {}).get("mapValue", {}).get("fields")
            if value is None:
                break
            source = value
            target = target.setdefault(part, {"mapValue": {"fields": {}}})["mapValue"]["fields"]
        else:
            if leaf in source:
                target[leaf] = source[leaf]
    result = {key: value for key, value in document.items() if key != "fields"}
    if kept:
        result["fields"] = kept
    return result
