"""Commits built as protobufs and sent through Firestore's GAPIC client.

The high-level client (``google.cloud.firestore``) builds a write through
proto-plus wrappers: about 0.18 ms of Python for the blind Commit's update
and delete, against about 0.02 ms for the same protobufs built directly
(bench/README.md, "Where the time goes"). On loopback that difference alone
was a sixth of a callback's receiver CPU. So the receiver builds its writes
here and sends them with the GAPIC client
(``google.cloud.firestore_v1.services.firestore.FirestoreClient``) that the
high-level client itself sends through: the same request
(tests/function/test_firestore_commit.py compares the bytes with the
high-level client's), the same metadata, the same channel.

Each Commit is sent with its caller's timeout and ``retry=None``: never
resent (docs/protocol.md, "One Commit").
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.types import common, document, write
from google.cloud.firestore_v1.types import firestore as firestore_types
from google.protobuf import timestamp_pb2

# The raw protobuf classes behind the proto-plus types (Message.pb()).
_Write = write.Write.pb()
_Document = document.Document.pb()
_Value = document.Value.pb()
_Precondition = common.Precondition.pb()
_DocumentMask = common.DocumentMask.pb()
_CommitRequest = firestore_types.CommitRequest.pb()
# A field name an update mask can hold as it is; anything else would need
# quoting, and the receiver writes none.
_SIMPLE_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CommitClient:
    """Commits to the database of a high-level client, on that client's channel.

    One channel for reads and Commits, as before: one connection, one set of
    credentials, and when the database comes back after an outage, reads and
    Commits reconnect together (a Commit channel of its own could still be
    waiting out gRPC's reconnect backoff while reads succeed:
    tests/function/test_unavailable.py).
    """

    def __init__(self, client: firestore.Client) -> None:
        # The high-level client's GAPIC client, database name and metadata
        # (the database as google-cloud-resource-prefix; on the emulator the
        # token it accepts), exactly as its own WriteBatch.commit sends them
        # (firestore_v1/batch.py). Not public attributes, so read here only,
        # and held to the high-level client's requests by the tests. The
        # GAPIC client adds the routing header (x-goog-request-params) itself.
        self._gapic = client._firestore_api
        self.database_path: str = client._database_string
        self._metadata = tuple(client._rpc_metadata)

    def document_name(self, collection: str, document_id: str) -> str:
        return f"{self.database_path}/documents/{collection}/{document_id}"

    def commit(self, writes: Sequence[Any], timeout: float) -> list[Any]:
        """Apply ``writes`` atomically, sent once: their WriteResults, in order.

        Raises what the GAPIC client raises (google.api_core.exceptions): a
        failed precondition, an unreachable database, a timeout.
        """
        request = firestore_types.CommitRequest.wrap(
            _CommitRequest(database=self.database_path, writes=writes)
        )
        # retry=None: the GAPIC client's default for Commit would resend it.
        response = self._gapic.commit(
            request=request, retry=None, timeout=timeout, metadata=self._metadata
        )
        return list(firestore_types.CommitResponse.pb(response).write_results)


def update(name: str, fields: Mapping[str, Any], last_update_time: Any) -> Any:
    """Set ``fields`` (top-level names) of an existing document, if it is still that version.

    ``last_update_time``: a protobuf Timestamp, or a Firestore time as a
    snapshot gives it (DatetimeWithNanoseconds).
    """
    return _Write(
        update=_Document(name=name, fields=encode_fields(fields)),
        # Sorted, as the high-level client sends it.
        update_mask=_DocumentMask(field_paths=sorted(_field_path(f) for f in fields)),
        current_document=_Precondition(update_time=_timestamp(last_update_time)),
    )


def create(name: str, fields: Mapping[str, Any]) -> Any:
    """Create the document with ``fields``; the Commit fails if it exists."""
    return _Write(
        update=_Document(name=name, fields=encode_fields(fields)),
        current_document=_Precondition(exists=False),
    )


def delete(name: str, must_exist: bool = False) -> Any:
    """Delete the document; with ``must_exist`` the Commit fails if it does not exist."""
    if must_exist:
        return _Write(delete=name, current_document=_Precondition(exists=True))
    return _Write(delete=name)


def encode_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: encode_value(value) for name, value in fields.items()}


def encode_value(value: Any) -> Any:
    """A Firestore Value for the types the receiver stores; TypeError for any other."""
    if value is None:
        return _Value(null_value=0)
    if isinstance(value, bool):
        return _Value(boolean_value=value)
    if isinstance(value, str):
        return _Value(string_value=value)
    if isinstance(value, int):
        return _Value(integer_value=value)
    if isinstance(value, float):
        return _Value(double_value=value)
    if isinstance(value, datetime):
        return _Value(timestamp_value=_timestamp(value))
    raise TypeError(f"the receiver does not store {type(value).__name__} values")


def _timestamp(value: Any) -> timestamp_pb2.Timestamp:
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    if hasattr(value, "timestamp_pb"):
        # DatetimeWithNanoseconds (a snapshot's times) keeps its nanoseconds.
        return value.timestamp_pb()
    # As the high-level client encodes a datetime (_helpers._datetime_to_pb_timestamp):
    # a naive one is UTC.
    seconds = calendar.timegm(value.utctimetuple())
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=value.microsecond * 1000)


def _field_path(name: str) -> str:
    if not _SIMPLE_FIELD.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain field name")
    return name
