"""The bridge answers like Firestore's REST API: same documents, same status codes."""

from __future__ import annotations

import pytest
import requests

from local.firestore_rest_bridge import CONNECTOR_PREFIX


@pytest.fixture
def root(gcp_project, firestore_database) -> str:
    return f"projects/{gcp_project}/databases/{firestore_database}/documents"


def call(bridge, method: str, **args):
    return bridge.call(CONNECTOR_PREFIX + method, args)


def status_of(bridge, method: str, **args) -> tuple[int, str]:
    with pytest.raises(requests.HTTPError) as caught:
        call(bridge, method, **args)
    error = caught.value.response.json()["error"]
    assert error["code"] == caught.value.response.status_code
    return caught.value.response.status_code, error["status"]


BODY = {
    "fields": {
        "s": {"stringValue": "x"},
        "i": {"integerValue": "7"},
        "b": {"booleanValue": False},
        "n": {"nullValue": None},
        "t": {"timestampValue": "2026-01-02T03:04:05.123456Z"},
        "m": {"mapValue": {"fields": {"k": {"doubleValue": 1.5}, "o": {"stringValue": "y"}}}},
    }
}


def test_create_get_delete_round_trip(bridge, root, firestore_client):
    created = call(
        bridge, "createDocument", parent=root, collectionId="c", documentId="d", body=BODY
    )
    name = f"{root}/c/d"

    assert created["name"] == name
    assert created["fields"] == BODY["fields"]
    assert call(bridge, "get", name=name)["fields"] == BODY["fields"]
    assert firestore_client.document("c/d").get().to_dict()["i"] == 7
    masked = call(bridge, "get", name=name, **{"mask.fieldPaths": ["s", "m.k"]})
    assert masked["fields"] == {
        "s": BODY["fields"]["s"],
        "m": {"mapValue": {"fields": {"k": {"doubleValue": 1.5}}}},
    }

    assert call(bridge, "delete", name=name) == {}
    assert not firestore_client.document("c/d").get().exists
    assert bridge.calls == {"createDocument": 1, "get": 2, "delete": 1}


def test_a_created_document_is_answered_from_its_commit_not_read_back(bridge, root):
    # Read back, it could already be gone (a 404 after a successful create).
    bridge.fail_next("get", status=404, grpc_status="NOT_FOUND", times=5)
    created = call(
        bridge, "createDocument", parent=root, collectionId="c", documentId="e", body=BODY
    )

    assert created["fields"] == BODY["fields"]
    assert created["createTime"] == created["updateTime"]
    assert bridge.calls == {"createDocument": 1}


def test_status_codes_match_firestore_rest(bridge, root):
    name = f"{root}/c/d"
    assert status_of(bridge, "get", name=name) == (404, "NOT_FOUND")
    call(bridge, "createDocument", parent=root, collectionId="c", documentId="d", body=BODY)
    assert status_of(
        bridge, "createDocument", parent=root, collectionId="c", documentId="d", body=BODY
    ) == (409, "ALREADY_EXISTS")
    assert status_of(
        bridge, "delete", name=name, **{"currentDocument.updateTime": "2001-01-01T00:00:00Z"}
    ) == (400, "FAILED_PRECONDITION")
    assert status_of(
        bridge,
        "delete",
        name=name,
        **{"currentDocument.exists": True, "currentDocument.updateTime": "2001-01-01T00:00:00Z"},
    ) == (400, "INVALID_ARGUMENT")
    assert status_of(
        bridge, "delete", name=f"{root}/c/missing", **{"currentDocument.exists": True}
    ) == (404, "NOT_FOUND")
    assert status_of(bridge, "get", name=f"{root}/c") == (400, "INVALID_ARGUMENT")
    assert status_of(
        bridge, "createDocument", parent=root, collectionId="c", body={"fields": {"x": {"no": 1}}}
    ) == (400, "INVALID_ARGUMENT")
    call(bridge, "delete", name=f"{root}/c/missing")  # no precondition: deleting nothing is fine


def test_delete_with_an_update_time_precondition(bridge, root, firestore_client):
    # What waitForResponse relies on to remove a timed-out registration
    # without losing a callback stored after its last read.
    created = call(
        bridge, "createDocument", parent=root, collectionId="c", documentId="v", body=BODY
    )
    newer = firestore_client.document("c/v").update({"s": "new"}).update_time

    stale = {"currentDocument": {"updateTime": created["updateTime"]}}
    refused = status_of(bridge, "delete", name=created["name"], **stale)
    assert refused == (400, "FAILED_PRECONDITION")
    assert firestore_client.document("c/v").get().exists

    current = {"currentDocument": {"updateTime": newer.isoformat().replace("+00:00", "Z")}}
    assert call(bridge, "delete", name=created["name"], **current) == {}
    assert not firestore_client.document("c/v").get().exists


def test_injected_faults_look_like_firestore_errors(bridge, root):
    bridge.fail_next("get", status=503, grpc_status="UNAVAILABLE", times=2)
    assert status_of(bridge, "get", name=f"{root}/c/d") == (503, "UNAVAILABLE")
    assert status_of(bridge, "get", name=f"{root}/c/d") == (503, "UNAVAILABLE")
    assert status_of(bridge, "get", name=f"{root}/c/d") == (404, "NOT_FOUND")


# --- documents.patch: Firestore's semantics, which the npm emulator lacks --------
def tombstone(update_time: str | None = None, **precondition) -> dict:
    """What waitForResponse writes: CONSUMED, the payload dropped (in the mask, not the body)."""
    args: dict = {
        "updateMask": {"fieldPaths": ["state", "consumedAt", "payload"]},
        "body": {
            "fields": {
                "state": {"stringValue": "CONSUMED"},
                "consumedAt": {"timestampValue": "2026-01-02T03:04:06Z"},
            }
        },
    }
    if update_time is not None:
        precondition["updateTime"] = update_time
    if precondition:
        args["currentDocument"] = precondition
    return args


RECEIVED = {
    "fields": {
        "state": {"stringValue": "RECEIVED"},
        "payload": {"stringValue": '{"body": 1}'},
        "token": {"stringValue": "t"},
        "m": {"mapValue": {"fields": {"k": {"stringValue": "a"}, "o": {"stringValue": "b"}}}},
    }
}


def test_patch_with_an_update_mask_sets_deletes_and_keeps_as_firestore_does(
    bridge, root, firestore_client
):
    created = call(
        bridge, "createDocument", parent=root, collectionId="c", documentId="p", body=RECEIVED
    )

    written = call(bridge, "patch", name=created["name"], **tombstone(created["updateTime"]))

    stored = firestore_client.document("c/p").get()
    # In the mask and the body: set; in the mask only: deleted; not in the mask: kept.
    assert stored.to_dict()["state"] == "CONSUMED"
    assert "payload" not in stored.to_dict()
    assert stored.to_dict()["token"] == "t"
    assert stored.to_dict()["m"] == {"k": "a", "o": "b"}
    assert written["fields"] == call(bridge, "get", name=created["name"])["fields"]
    assert written["updateTime"] != created["updateTime"]
    assert written["createTime"] == created["createTime"]  # as Firestore answers it
    # A nested path deletes inside the map only; without a mask the body replaces all.
    call(bridge, "patch", name=created["name"], **{"updateMask.fieldPaths": ["m.k"]}, body={})
    assert firestore_client.document("c/p").get().to_dict()["m"] == {"o": "b"}
    call(bridge, "patch", name=created["name"], body={"fields": {"only": {"integerValue": "1"}}})
    assert firestore_client.document("c/p").get().to_dict() == {"only": 1}


def test_patch_preconditions_answer_as_firestore_does(bridge, root, firestore_client):
    created = call(
        bridge, "createDocument", parent=root, collectionId="c", documentId="q", body=RECEIVED
    )
    name = created["name"]

    # Another version than the stored one: FAILED_PRECONDITION (HTTP 400), nothing written.
    assert status_of(bridge, "patch", name=name, **tombstone("1970-01-01T00:00:00Z")) == (
        400,
        "FAILED_PRECONDITION",
    )
    assert firestore_client.document("c/q").get().to_dict()["state"] == "RECEIVED"
    # Must exist, and does not: NOT_FOUND (404); must not exist, and does: 409.
    missing = f"{root}/c/missing"
    assert status_of(bridge, "patch", name=missing, **tombstone(exists=True)) == (404, "NOT_FOUND")
    assert not firestore_client.document("c/missing").get().exists
    assert status_of(bridge, "patch", name=name, **tombstone(exists=False)) == (
        409,
        "ALREADY_EXISTS",
    )
    # Without a precondition a patch inserts; exists: true updates what is there.
    call(bridge, "patch", name=missing, **tombstone())
    assert firestore_client.document("c/missing").get().to_dict()["state"] == "CONSUMED"
    call(bridge, "patch", name=name, **tombstone(exists=True))
    assert "payload" not in firestore_client.document("c/q").get().to_dict()
    assert bridge.calls["patch"] == 5


def test_patch_reads_again_when_someone_writes_in_between(bridge, root, firestore_client):
    class Interleaved(type(bridge)):
        """Someone else's write lands between the bridge's read and its write, once."""

        def _read_pb(self, name):
            stored = super()._read_pb(name)
            if not getattr(self, "interfered", False):
                self.interfered = True
                firestore_client.document("c/r").update({"other": "theirs"})
            return stored

    created = call(
        bridge, "createDocument", parent=root, collectionId="c", documentId="r", body=RECEIVED
    )
    with Interleaved(bridge.host) as interleaved:
        call(interleaved, "patch", name=created["name"], **tombstone())

    stored = firestore_client.document("c/r").get().to_dict()
    assert stored["other"] == "theirs"  # not lost to the patch's read-modify-write
    assert stored["state"] == "CONSUMED" and "payload" not in stored


def test_batch_get_answers_each_document_found_or_missing_in_no_promised_order(bridge, root):
    database = root.removesuffix("/documents")
    for document_id in ("a", "b"):
        call(bridge, "createDocument", parent=root, collectionId="c", documentId=document_id,
             body=BODY)  # fmt: skip
    names = [f"{root}/c/a", f"{root}/c/gone", f"{root}/c/b", f"{root}/c/a"]

    answers = call(bridge, "batchGet", database=database, body={"documents": names})

    # Duplicates elided (the reference); one answer per document, never in the
    # request's order (Firestore promises none: the stand-in reverses it).
    assert [a.get("found", {}).get("name") or a["missing"] for a in answers] == names[2::-1]
    assert all("readTime" in a for a in answers)
    found = {a["found"]["name"]: a["found"] for a in answers if "found" in a}
    assert found[f"{root}/c/b"]["fields"] == BODY["fields"]
    assert set(found[f"{root}/c/a"]) >= {"name", "fields", "createTime", "updateTime"}
    masked = call(bridge, "batchGet", database=database,
                  body={"documents": names[:1], "mask": {"fieldPaths": ["s"]}})  # fmt: skip
    assert masked[0]["found"]["fields"] == {"s": BODY["fields"]["s"]}
    assert bridge.calls["batchGet"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {"documents": []},
        {},
        {"documents": ["projects/other/databases/d/documents/c/a"]},
        {"documents": ["{root}/c"]},
        {"documents": ["{root}/c/a"], "readTime": "2026-01-01T00:00:00Z"},
        {"documents": ["{root}/c/a"], "newTransaction": {"readOnly": {}}},
    ],
    ids=["no-documents", "no-body", "another-database", "a-collection", "read-time", "transaction"],
)
def test_batch_get_refuses_what_the_reference_refuses_or_leaves_open(bridge, root, body):
    documents = [name.format(root=root) for name in body.get("documents", [])]
    request = {**body, "documents": documents} if "documents" in body else body

    assert status_of(
        bridge, "batchGet", database=root.removesuffix("/documents"), body=request
    ) == (400, "INVALID_ARGUMENT")
