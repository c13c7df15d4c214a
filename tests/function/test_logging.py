"""One structured JSON log line per request, without secrets or bodies."""

from __future__ import annotations

import json

import pytest

SECRET_BODY = "body-text-that-must-not-be-logged"


def _log_lines(capsys) -> list[dict]:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(
    "send, status, outcome, severity",
    [
        ("right", 200, "stored", "INFO"),
        ("wrong", 403, "forbidden", "WARNING"),
    ],
)
def test_each_request_logs_one_json_line(
    client, register, callback_url, capsys, send, status, outcome, severity
):
    token = register()
    capsys.readouterr()
    sent = token if send == "right" else "wrong-" + token
    response = client.post(
        callback_url(token=sent, value="v"), data=SECRET_BODY, content_type="text/plain"
    )
    assert response.status_code == status

    out = capsys.readouterr().out
    [entry] = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert entry["severity"] == severity
    assert entry["runID"] == "run-1"
    assert entry["step"] == "approve"
    assert entry["outcome"] == outcome
    assert entry["status"] == status
    assert isinstance(entry["latencyMs"], int | float)
    assert isinstance(entry["message"], str)
    assert token not in out
    assert SECRET_BODY not in out


def test_invalid_ids_are_not_logged(client, callback_url, capsys):
    client.get(callback_url("bad_id<script>", "approve"))
    [entry] = _log_lines(capsys)
    assert entry["status"] == 400
    assert entry["runID"] is None
    assert "<script>" not in json.dumps(entry)


def test_trace_context_links_the_log_line(client, register, callback_url, capsys, gcp_project):
    token = register()
    capsys.readouterr()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    client.get(callback_url(token=token), headers={"X-Cloud-Trace-Context": f"{trace_id}/1;o=1"})
    [entry] = _log_lines(capsys)
    assert entry["logging.googleapis.com/trace"] == f"projects/{gcp_project}/traces/{trace_id}"
