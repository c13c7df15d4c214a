"""verify against the local stack: the whole procedure, then each stage failing in turn.

The local stack is the suite's Google: the verification workflow runs in the
local runner, the registration is read from the Firestore emulator, and the
receiver is called over HTTP, exactly as `python -m ops verify` does against
a deployed stack. Each failure test breaks one part and checks the stage
that failed and the diagnosis verify gives.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from local.receiver import free_port
from ops import verify
from ops.local_target import LocalDeployment, local_deployment

pytestmark = pytest.mark.e2e


@pytest.fixture
def deployment(firestore_emulator_host: str) -> Iterator[LocalDeployment]:
    with local_deployment() as deployment:
        yield deployment


def run(deployment: LocalDeployment, **options: object) -> tuple[verify.Report, io.StringIO]:
    out = io.StringIO()
    report = verify.Report(out=out)
    verify.run(deployment, verify.Options(poll_seconds=0.05, **options), report)  # type: ignore[arg-type]
    return report, out


def failure(deployment: LocalDeployment, **options: object) -> verify.VerifyFailed:
    with pytest.raises(verify.VerifyFailed) as raised:
        run(deployment, **options)
    return raised.value


def test_a_working_stack_passes_every_stage(deployment: LocalDeployment) -> None:
    report, out = run(deployment, timeout_seconds=30)
    assert [stage for stage, _ in report.stages] == [
        "execution started",
        "URL received",
        "forged token refused",
        "page renders",
        "page answered",
        "callback stored",
        "resumed",
        "forwarded",
        "result matches",
    ]
    assert dict(report.stages)["resumed"].endswith("after the 200 (push)")
    assert dict(report.stages)["forwarded"] == "delivered"
    assert "verify passed in" in out.getvalue()


def test_the_url_verify_rebuilds_is_the_one_getcallbackurl_returned(
    deployment: LocalDeployment,
) -> None:
    run_id = deployment.start({"timeoutSeconds": 5, "page": True})
    returned = deployment.returned_urls[run_id]
    deadline = time.monotonic() + 30
    while len(returned) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    rebuilt = [deployment.registration_url(run_id, step) for step in ("verify", "verify-page")]
    deployment.stop(run_id)
    assert len(returned) == 2
    assert [_capability(url) for url in rebuilt] == [_capability(url) for url in returned]


def _capability(url: str | None) -> dict[str, object]:
    assert url is not None
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    # The same instant, whichever digits Firestore's REST API and protobuf print.
    query["reg"] = datetime.fromisoformat(query["reg"].replace("Z", "+00:00"))
    return {"origin": (parts.scheme, parts.netloc), **query}


def test_a_receiver_that_is_down_is_named(firestore_emulator_host: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with local_deployment(function_url=dead) as deployment:
        failed = failure(deployment, timeout_seconds=3, page=False)
    assert failed.stage == "forged token refused"
    assert "not reachable" in failed.problem
    assert "functionUrl" in failed.diagnosis


def test_a_failed_forward_is_diagnosed_from_the_receivers_log(
    deployment: LocalDeployment,
) -> None:
    callbacks = deployment.stack.settings.callbacks
    assert callbacks is not None
    # Workflows' callback endpoint refuses the receiver, as it does before
    # the function's workflows.callbacks.send grant has taken effect.
    callbacks.fail_next(status=403, times=20)
    failed = failure(deployment, timeout_seconds=8, page=False)
    assert failed.stage == "forwarded"
    assert "forward failed" in failed.problem
    assert "HTTP 403" in failed.problem
    assert "workflows.callbacks.send" in failed.diagnosis


class WrongToken(LocalDeployment):
    """A deployment whose registration yields a token the receiver never issued."""

    def registration_url(self, run_id: str, step: str) -> str | None:
        url = super().registration_url(run_id, step)
        return None if url is None else url.replace("token=", "token=0", 1)


def test_a_token_the_receiver_refuses_is_diagnosed(firestore_emulator_host: str) -> None:
    with local_deployment() as deployment:
        wrong = WrongToken(deployment.stack, deployment._receiver_log)
        try:
            failed = failure(wrong, timeout_seconds=3, page=False)
        finally:
            wrong.close()
    assert failed.stage == "callback stored"
    assert "HTTP 403" in failed.problem
    assert "refused the token it issued" in failed.diagnosis


def test_a_workflow_refused_by_firestore_gets_the_iam_advice(
    deployment: LocalDeployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What the Firestore connector raises before the workflow's grant has
    # taken effect: the execution fails before it registers anything.
    refused = tmp_path / "refused.yaml"
    refused.write_text(
        "main:\n"
        "  params: [input]\n"
        "  steps:\n"
        "    - register:\n"
        "        raise:\n"
        "          code: 403\n"
        "          message: 'PERMISSION_DENIED: Missing or insufficient permissions.'\n"
        "          tags: [HttpError]\n"
    )
    monkeypatch.setattr("ops.local_target.VERIFY_WORKFLOW", refused)
    failed = failure(deployment, timeout_seconds=5, page=False)
    assert failed.stage == "URL received"
    assert "ended (FAILED) before registering" in failed.problem
    assert "IAM grants take about 2 minutes" in failed.diagnosis
