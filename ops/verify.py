"""verify: one real callback round trip through a stack, stage by stage.

1. start the verification workflow (workflow/verify.yaml);
2. wait for its registrations and rebuild their URLs (ops.deployment);
3. check that a forged token gets 403 and changes nothing;
4. with the page: check that it renders, then answer it as a person would;
5. send a random payload to the machine URL;
6. wait for the execution to end, and time the resume from the 200;
7. check that the result is exactly what was sent.

Each stage prints its time. The first stage that fails raises VerifyFailed
with a diagnosis of the usual causes, and the run is stopped.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from ops.deployment import SUCCEEDED, Deployment, ExecutionStatus

MACHINE_STEP = "verify"
PAGE_STEP = "verify-page"
PAGE_TITLE = "workflow-callbacks verify"
PAGE_CHOICE = "confirm"
# A forwarded callback resumes a push wait within a second (bench/RESULTS.md);
# past this, verify reads the receiver's log for the forward's outcome.
PUSH_GRACE_SECONDS = 5.0
HTTP_TIMEOUT_SECONDS = 30.0
# How long verify waits for the receiver's log line (Cloud Logging ingests
# entries within seconds, rarely a minute).
LOG_WAIT_SECONDS = 60.0


class VerifyFailed(Exception):
    """A stage failed; ``diagnosis`` says what usually causes it and what to do."""

    def __init__(self, stage: str, problem: str, diagnosis: str = "") -> None:
        super().__init__(f"{stage}: {problem}")
        self.stage = stage
        self.problem = problem
        self.diagnosis = diagnosis


@dataclass
class Options:
    # How long the execution waits for each callback, and verify for each stage.
    timeout_seconds: int = 120
    page: bool = True
    poll_seconds: float = 0.5


@dataclass
class Report:
    """Prints each stage as it ends: ``  ok  <stage>  <detail>``."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    stages: list[tuple[str, str]] = field(default_factory=list)

    def ok(self, stage: str, detail: str) -> None:
        self.stages.append((stage, detail))
        print(f"  ok    {stage:<22} {detail}", file=self.out, flush=True)

    def failed(self, failure: VerifyFailed) -> None:
        print(f"  FAIL  {failure.stage:<22} {failure.problem}", file=self.out, flush=True)
        if failure.diagnosis:
            for line in failure.diagnosis.splitlines():
                print(f"        {line}", file=self.out, flush=True)


def run(deployment: Deployment, options: Options, report: Report) -> None:
    """The whole round trip; raises VerifyFailed at the first stage that fails."""
    print(f"verify: {deployment.description}", file=report.out, flush=True)
    started = time.monotonic()
    run_id = _start(deployment, options, report)
    try:
        _round_trip(deployment, run_id, options, report)
    except BaseException:
        deployment.stop(run_id)
        raise
    print(f"verify passed in {time.monotonic() - started:.1f} s", file=report.out, flush=True)


def _start(deployment: Deployment, options: Options, report: Report) -> str:
    argument = {"timeoutSeconds": options.timeout_seconds, "page": options.page}
    with _timed() as elapsed:
        run_id = deployment.start(argument)
    report.ok("execution started", f"{_ms(elapsed())}  {run_id}")
    return run_id


def _round_trip(deployment: Deployment, run_id: str, options: Options, report: Report) -> None:
    steps = [MACHINE_STEP, PAGE_STEP] if options.page else [MACHINE_STEP]
    with _timed() as elapsed:
        urls = {step: _registered_url(deployment, run_id, step, options) for step in steps}
    report.ok("URL received", f"after {_ms(elapsed())}")

    machine_url = urls[MACHINE_STEP]
    _check_forged_token(machine_url, report)
    nonce = secrets.token_hex(8) if options.page else None
    if nonce is not None:
        _check_page(urls[PAGE_STEP], nonce, report)
    payload = {"verify": secrets.token_hex(16), "n": secrets.randbelow(1_000_000)}
    answered_at = _send(machine_url, payload, report)
    status = _wait_for_end(deployment, run_id, answered_at, options, report)
    _check_result(status, payload, nonce, report)


def _registered_url(deployment: Deployment, run_id: str, step: str, options: Options) -> str:
    deadline = time.monotonic() + options.timeout_seconds
    while True:
        url = deployment.registration_url(run_id, step)
        if url is not None:
            return url
        status = deployment.status(run_id)
        if not status.active:
            raise VerifyFailed(
                "URL received",
                f"the execution ended ({status.state}) before registering step {step!r}: "
                f"{status.error}",
                _execution_error_diagnosis(status.error or ""),
            )
        if time.monotonic() > deadline:
            raise VerifyFailed(
                "URL received",
                f"no registration of step {step!r} after {options.timeout_seconds} s",
                "The execution is running but has not written to Firestore. Look at it in the "
                "console (Workflows > the verify workflow > Executions), and check that the "
                "workflow's firestoreDatabase and callbacksCollection outputs are the ones "
                "it writes to.",
            )
        time.sleep(options.poll_seconds)


def _check_forged_token(url: str, report: Report) -> None:
    forged = _with_query(url, token=secrets.token_hex(32))
    with _timed() as elapsed:
        response = _call("forged token refused", "POST", forged, json={"forged": True})
    if response.status_code != 403:
        raise VerifyFailed(
            "forged token refused",
            f"a made-up token got HTTP {response.status_code}, not 403: {_excerpt(response)}",
            "The receiver must refuse a token it did not issue. If this is 200, the stack "
            "accepts unregistered callbacks (allowUnregisteredCallbacks) or runs an old "
            "receiver: pulumi up, then verify again.",
        )
    report.ok("forged token refused", f"403 in {_ms(elapsed())}")


def _check_page(url: str, nonce: str, report: Report) -> None:
    with _timed() as elapsed:
        page = _call("page renders", "GET", url)
    content_type = page.headers.get("Content-Type", "")
    if page.status_code != 200 or not content_type.startswith("text/html"):
        raise VerifyFailed(
            "page renders",
            f"GET of the page got HTTP {page.status_code} {content_type}: {_excerpt(page)}",
            "The page for people should render the form. " + _status_diagnosis(page),
        )
    if PAGE_TITLE not in page.text:
        raise VerifyFailed("page renders", "the page does not show the form's title")
    report.ok("page renders", f"200 in {_ms(elapsed())}")
    _post_expecting_200(
        "page answered", url, report, data={"choice": PAGE_CHOICE, "comment": nonce}
    )


def _send(url: str, payload: dict[str, Any], report: Report) -> float:
    """POST the payload; return the Unix time its 200 came back."""
    _post_expecting_200("callback stored", url, report, json=payload)
    return time.time()


def _post_expecting_200(stage: str, url: str, report: Report, **body: Any) -> None:
    """POST ``body`` (requests' json= or data=); anything but 200 fails ``stage``."""
    with _timed() as elapsed:
        response = _call(stage, "POST", url, **body)
    if response.status_code != 200:
        raise VerifyFailed(
            stage,
            f"HTTP {response.status_code}: {_excerpt(response)}",
            _status_diagnosis(response),
        )
    report.ok(stage, f"200 in {_ms(elapsed())}")


def _wait_for_end(
    deployment: Deployment, run_id: str, answered_at: float, options: Options, report: Report
) -> ExecutionStatus:
    deadline = answered_at + options.timeout_seconds + 30
    forward_logged = False
    while True:
        status = deployment.status(run_id)
        if not status.active:
            break
        if deployment.delivery == "push" and time.time() - answered_at > PUSH_GRACE_SECONDS:
            # Push should have resumed the wait by now: a failed forward
            # leaves it waiting for the end of its slice (an hour by default).
            forward_logged = forward_logged or _forward_outcome(deployment, run_id) is not None
        if time.time() > deadline:
            raise VerifyFailed(
                "resumed",
                f"the execution is still waiting {options.timeout_seconds + 30} s after the "
                "callback's 200",
                "The callback was stored, but the wait did not take it. With poll delivery, "
                "check pollMaxSeconds; otherwise look at the execution in the console.",
            )
        time.sleep(options.poll_seconds)
    if status.state != SUCCEEDED:
        raise VerifyFailed(
            "resumed",
            f"the execution ended {status.state}: {status.error}",
            _execution_error_diagnosis(status.error or ""),
        )
    resumed_ms = max(0.0, ((status.ended_at or time.time()) - answered_at) * 1000)
    how = deployment.delivery if deployment.delivery in ("push", "poll") else "delivery unknown"
    detail = (
        f"{resumed_ms:.0f} ms after the 200 ({how})"
        if resumed_ms < 10_000
        else f"after {resumed_ms / 1000:.1f} s ({how})"
    )
    report.ok("resumed", detail)
    if deployment.delivery == "push":
        _check_forward(deployment, run_id, options, report)
    return status


def _check_forward(deployment: Deployment, run_id: str, options: Options, report: Report) -> None:
    """The receiver's log line for our callback says the forward was delivered.

    The wait may have taken the callback from Firestore (it reads once before
    awaiting), so a resume alone does not prove push works: a forward that
    failed would delay every later wait by a slice.
    """
    deadline = time.monotonic() + min(LOG_WAIT_SECONDS, options.timeout_seconds)
    while (outcome := _forward_outcome(deployment, run_id)) is None:
        if time.monotonic() > deadline:
            report.ok("forwarded", "not checked: the receiver's log line is not readable yet")
            return
        time.sleep(max(options.poll_seconds, 1.0))
    report.ok("forwarded", outcome)


def _forward_outcome(deployment: Deployment, run_id: str) -> str | None:
    """The forward's outcome the receiver logged for our callback; fails if it failed."""
    entries = [
        entry
        for entry in deployment.receiver_log(run_id)
        if entry.get("step") == MACHINE_STEP and entry.get("status") == 200
    ]
    if not entries:
        return None  # not logged yet (Cloud Logging takes a few seconds)
    entry = entries[-1]
    forward = str(entry.get("forward"))
    if forward in ("failed", "refused"):
        reason = entry.get("forwardDetail") or f"HTTP {entry.get('forwardStatus')}"
        raise VerifyFailed(
            "forwarded",
            f"the receiver stored the callback but its forward {forward}: {reason}",
            _forward_diagnosis(forward, entry.get("forwardStatus")),
        )
    return forward


def _check_result(
    status: ExecutionStatus, payload: dict[str, Any], nonce: str | None, report: Report
) -> None:
    result = _map(status.result)
    machine = _map(result.get("machine"))
    if machine.get("body") != payload:
        raise VerifyFailed(
            "result matches",
            f"sent {json.dumps(payload)}, the workflow returned {json.dumps(machine.get('body'))}",
            "The workflow returned another callback than the one verify sent: another "
            "caller answered this run's URL first, or the receiver and the workflow "
            "disagree on the payload format (deploy both from one version).",
        )
    if nonce is not None:
        page = _map(result.get("page"))
        body = _map(page.get("body"))
        if page.get("value") != PAGE_CHOICE or body.get("comment") != nonce:
            raise VerifyFailed(
                "result matches",
                f"the page's answer came back as {json.dumps(page)[:300]}",
            )
    report.ok("result matches", "what was sent came back")


def _map(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (a result is untrusted JSON)."""
    return value if isinstance(value, dict) else {}


# --- HTTP -------------------------------------------------------------------------------


def _call(stage: str, method: str, url: str, **kwargs: Any) -> requests.Response:
    try:
        return requests.request(method, url, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)
    except requests.ConnectionError as error:
        raise VerifyFailed(
            stage,
            f"the function is not reachable at {urlsplit(url).netloc}: {type(error).__name__}",
            "Check the functionUrl output (`pulumi stack output functionUrl`), that the "
            "function finished deploying (Cloud Run > the function > Revisions), and your "
            "network.",
        ) from None
    except requests.Timeout:
        raise VerifyFailed(
            stage,
            f"no answer within {HTTP_TIMEOUT_SECONDS:.0f} s",
            "A cold start takes a few seconds, not 30: check the function's logs.",
        ) from None


def _with_query(url: str, **replace: str) -> str:
    parts = urlsplit(url)
    query = [(name, replace.get(name, value)) for name, value in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _excerpt(response: requests.Response) -> str:
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("application/json"):
        return response.text.strip()[:300]
    return f"({content_type or 'no content type'}, {len(response.content)} bytes)"


# --- diagnoses --------------------------------------------------------------------------

IAM_WAIT = (
    "IAM grants take about 2 minutes to take effect, and up to 7 (docs/deploy.md, "
    "'IAM propagation'). Wait a few minutes and run verify again; if it persists, run "
    "`pulumi up` again. Nothing needs destroying."
)


def _status_diagnosis(response: requests.Response) -> str:
    code = response.status_code
    is_json = response.headers.get("Content-Type", "").startswith("application/json")
    if code in (401, 403) and not is_json:
        return (
            "This refusal comes from Cloud Run, not from the receiver (which answers JSON): "
            "the function does not allow unauthenticated calls. Set allowUnauthenticated: "
            "true, or, if it is set and the stack was just deployed, " + IAM_WAIT
        )
    if code == 403:
        return (
            "The receiver refused the token it issued. The function and the workflow must "
            "use the same firestoreDatabase and callbacksCollection (deploy both from one "
            "stack)."
        )
    if code == 404:
        return (
            "The receiver knows no such registration: the execution ended or the "
            "registration expired (ttlSeconds), or the function reads another database."
        )
    if code >= 500:
        return (
            "The receiver failed. Its log line says why: gcloud logging read "
            "'jsonPayload.runID=\"<runID>\" AND severity>=ERROR' --limit 5. A 503 "
            "'store unavailable' that lasts means Firestore is unreachable or the function's "
            "account cannot use it yet: " + IAM_WAIT
        )
    return ""


def _forward_diagnosis(forward: str, status: Any) -> str:
    if forward == "refused":
        return (
            "The receiver refuses to forward to an endpoint outside its own project and "
            "region: the function's CALLBACKS_REGION or CALLBACKS_PROJECT_NUMBER does not "
            "match the workflow's. Deploy both from the same stack."
        )
    if status in (401, 403):
        return (
            "The function's service account may not send callbacks yet "
            "(workflows.callbacks.send). " + IAM_WAIT
        )
    return (
        "Workflows' callback endpoint did not take the forward. The wait recovers at the end "
        "of its slice (pushSliceSeconds) by reading Firestore, so callbacks are delayed, not "
        "lost; the receiver's log line has the details."
    )


def _execution_error_diagnosis(error: str) -> str:
    if "TimeoutError" in error:
        return "Nothing reached the wait in time: see the stages above."
    if "403" in error or "PERMISSION_DENIED" in error:
        return "The workflow's service account was refused by Firestore. " + IAM_WAIT
    if "SERVICE_DISABLED" in error or "has not been used" in error:
        return (
            "An API the workflow calls is not enabled: set enableApis: true and "
            "`pulumi up`, or enable firestore.googleapis.com yourself."
        )
    return "See the execution in the console (Workflows > the verify workflow > Executions)."


@contextmanager
def _timed() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    ended: list[float] = []
    yield lambda: (ended[0] if ended else time.monotonic()) - started
    ended.append(time.monotonic())


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
