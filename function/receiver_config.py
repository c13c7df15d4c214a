"""The receiver's configuration, from its environment, and the one runtime built from it.

docs/protocol.md, "Environment and limits", lists the variables.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from google.cloud import firestore

import contract
from callback_forward import GOOGLE_ORIGIN, Forwarder
from firestore_commit import CommitClient


@dataclass(frozen=True)
class ReceiverConfig:
    """The function's configuration, from its environment variables."""

    project: str | None = None
    database: str = "(default)"
    collection: str = contract.DEFAULT_COLLECTION
    allow_unregistered: bool = False
    # Small enough that the payload built from it fits the stored-payload cap
    # (callback_intake.MAX_STORED_PAYLOAD_BYTES).
    max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES
    ttl_seconds: int = contract.DEFAULT_TTL_SECONDS
    # Push delivery: the region of the workflows whose callback endpoints the
    # receiver may call, and (deployed) the project number, which endpoint
    # URLs may carry instead of the project id.
    region: str | None = None
    project_number: str | None = None
    # Local stack only: where the callback endpoints are and the fixed token
    # they take (see callback_forward.Forwarder).
    forward_origin: str = GOOGLE_ORIGIN
    forward_local_token: str | None = None
    # Browser origins (https://app.example.com) whose pages may call the
    # machine URLs (CORS); none by default.
    allowed_origins: frozenset[str] = frozenset()
    # Running on Cloud Run (a gen2 function is a Cloud Run service), which
    # sets K_SERVICE (https://cloud.google.com/run/docs/container-contract):
    # the caller's address is then the first X-Forwarded-For hop, since the
    # socket's peer is Google's front end.
    on_cloud_run: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ReceiverConfig:
        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or None,
            database=env.get("CALLBACKS_DATABASE") or cls.database,
            collection=env.get("CALLBACKS_COLLECTION") or cls.collection,
            allow_unregistered=_flag(env, "CALLBACKS_ALLOW_UNREGISTERED", cls.allow_unregistered),
            max_body_bytes=_positive_int(env, "CALLBACKS_MAX_BODY_BYTES", cls.max_body_bytes),
            ttl_seconds=_positive_int(env, "CALLBACKS_TTL_SECONDS", cls.ttl_seconds),
            region=env.get("CALLBACKS_REGION") or None,
            project_number=env.get("CALLBACKS_PROJECT_NUMBER") or None,
            forward_origin=env.get("CALLBACKS_FORWARD_ORIGIN") or cls.forward_origin,
            forward_local_token=env.get("CALLBACKS_FORWARD_LOCAL_TOKEN") or None,
            allowed_origins=frozenset(
                origin.strip().rstrip("/")
                for origin in env.get("CALLBACKS_ALLOWED_ORIGINS", "").split(",")
                if origin.strip()
            ),
            on_cloud_run=bool(env.get("K_SERVICE")),
        )

    def forwarder(self) -> Forwarder:
        return Forwarder(
            self.project,
            self.region,
            origin=self.forward_origin,
            local_token=self.forward_local_token,
            project_number=self.project_number,
        )


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) <= 0:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Runtime:
    """What a request needs beyond itself: the configuration and its clients."""

    config: ReceiverConfig
    # Reads; Commits go through ``commits``, on the same channel
    # (firestore_commit.py says why).
    client: firestore.Client
    forwarder: Forwarder
    commits: CommitClient


class LazyRuntime:
    """One configuration and one Firestore client per instance, made on first use.

    Not at import: a configuration error is then a logged 500 on each
    request rather than a crashed deploy. main.py holds the instance, and
    each functions_framework.create_app loads main.py afresh, which is how
    tests run the function with another environment.
    """

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._config: ReceiverConfig | None = None
        self._runtime: Runtime | None = None

    def config(self) -> ReceiverConfig:
        """The configuration alone (CORS needs no Firestore client); ValueError if invalid."""
        with self._lock:
            return self._config_locked()

    def runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None:
                config = self._config_locked()
                # The forwarder first: it refuses a bad local setting before
                # a client is made for nothing.
                forwarder = config.forwarder()
                client = firestore.Client(project=config.project, database=config.database)
                # Made here, under the lock: it makes the client's channel.
                self._runtime = Runtime(config, client, forwarder, CommitClient(client))
            return self._runtime

    def project(self) -> str | None:
        """The project for log trace ids, even when the rest of the configuration is invalid."""
        config = self._config
        return (config.project if config else None) or self._env.get("GOOGLE_CLOUD_PROJECT")

    def _config_locked(self) -> ReceiverConfig:
        if self._config is None:
            self._config = ReceiverConfig.from_env(self._env)
        return self._config
