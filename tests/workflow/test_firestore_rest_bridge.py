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
