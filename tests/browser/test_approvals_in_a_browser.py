"""Three approvers click their approval links in Debian's chromium (headless) on the local stack.

tests/browser/approval_workflow.yaml asks three people (one label full of
HTML specials, to prove the page escapes it in a real browser) with quorum 2
and one rejection deciding. The links come from getApprovalURLs through
RunInBackground's ``approvals``; each test clicks the page's real buttons and
checks what the workflow got and what the receiver wrote in the Firestore
emulator (docs/protocol.md, "Approvals").

Screenshots of the open, answered and expired pages go to tmp_path, and
also to $SCREENSHOTS_DIR when it is set (``make screenshots`` writes docs/).
The ``browser`` fixture (conftest.py) skips, saying so, without chromium.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from local.environment import environment
from local.firestore_emulator import ENV_HOST
from local.stack import LocalStack, local_stack
from tests.browser.browser_helpers import SCREENSHOTS_DIR, TIMEOUT, RunInBackground

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = Path(__file__).with_name("approval_workflow.yaml")
TITLE = "Deploy release 1.4.2 to production?"
DESCRIPTION = "Two approvals release it; one rejection stops it."
ESCAPE_ME = "<b>Zo\u00eb & co</b>"
APPROVERS = ["ana@example.com", "bo@example.com", ESCAPE_ME]
ANA, BO, ZOE = range(3)
APPROVE, REJECT = "approve", "reject"
# Long enough for one click on a loaded machine, short enough to wait out.
SHORT_TIMEOUT_SECONDS = 5
TIME_LEFT = r"(\d+ d )?(\d+ h )?\d+ min left|less than a minute left"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    """One local stack for the module: every run has its own execution id, so its own links."""
    with local_stack() as started:
        yield started


@pytest.fixture(scope="module")
def store(stack: LocalStack) -> Iterator[firestore.CollectionReference]:
    """The receiver's collection in the stack's emulator, to read what it wrote."""
    settings = stack.settings
    # The client takes the emulator's address from the environment when it is made.
    with environment({ENV_HOST: settings.firestore_host}):
        client = firestore.Client(
            project=settings.project, database=settings.database, credentials=AnonymousCredentials()
        )
    yield client.collection(settings.collection)
    client.close()


@pytest.fixture
def start_approval(stack: LocalStack, store: firestore.CollectionReference) -> Iterator:
    """Start approvals; at the end a run a failed test left waiting is rejected, so that
    it does not hold the runner's lock (one workflow at a time) for the next test."""
    started: list[Approval] = []

    def start(**argument: Any) -> Approval:
        started.append(Approval(stack, store, **argument))
        return started[-1]

    yield start
    for approval in started:
        approval.end()


class Approval:
    """One run of the approval workflow: its three links and their documents."""

    def __init__(self, stack: LocalStack, store: firestore.CollectionReference, **argument: Any):
        self.run = RunInBackground(stack, WORKFLOW, {"approvers": APPROVERS, **argument})
        approvals = self.run.approval_links()
        assert [link["approver"] for link in approvals["links"]] == APPROVERS
        self.urls = [link["url"] for link in approvals["links"]]
        self.group_id = f"{approvals['runID']}_{approvals['step']}"
        self.store = store
        self._until_the_wait_started()

    def group(self) -> firestore.DocumentSnapshot:
        return self.store.document(self.group_id).get()

    def link(self, index: int) -> firestore.DocumentSnapshot:
        return self.store.document(f"{self.group_id}.approver.{index}").get()

    def deadline(self) -> str:
        """The group's deadline as the page writes it: minutes, UTC."""
        return minute(self.group().get("deadline"))

    def end(self) -> None:
        """Reject on every link's machine URL while the run still waits; then it has ended."""
        for url in self.urls:
            if not self.run.thread.is_alive():
                return
            machine_url = url.removesuffix("&view=page")
            requests.post(machine_url, json={"value": REJECT}, timeout=TIMEOUT)
            self.run.thread.join(2)

    def _until_the_wait_started(self) -> None:
        # The links exist before waitForApprovals writes the deadline and the
        # quorum the page shows; until then the page shows the link's expiry.
        give_up = time.monotonic() + TIMEOUT
        while "deadline" not in (self.group().to_dict() or {}):
            assert time.monotonic() < give_up, "waitForApprovals did not start"
            time.sleep(0.1)


def minute(stamp: datetime) -> str:
    return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the page, as the browser shows it --------------------------------------------------
def facts(browser) -> list[str]:
    """The lines above the form: whom, until when, how many."""
    from selenium.webdriver.common.by import By

    return [fact.text for fact in browser.find_elements(By.CSS_SELECTOR, "p.fact")]


def message(browser) -> str:
    """The page's last paragraph: what it says about this link now."""
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "main > p")[-1].text


def response_status(browser) -> int:
    """The HTTP status of the page shown (Navigation Timing's responseStatus)."""
    script = "return performance.getEntriesByType('navigation')[0].responseStatus"
    return int(browser.execute_script(script))


def has_form(browser) -> bool:
    from selenium.webdriver.common.by import By

    return bool(browser.find_elements(By.CSS_SELECTOR, "form button[name=choice]"))


def click(browser, choice: str, comment: str = "") -> str:
    """Type the comment, click the choice's button, wait for the next page; its message."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    if comment:
        browser.find_element(By.ID, "comment").send_keys(comment)
    selector = f"button[name=choice][value={choice}]"
    for attempt in range(3):
        button = browser.find_element(By.CSS_SELECTOR, selector)
        try:
            button.click()
            break
        except WebDriverException as error:
            # chromedriver now and then fails to resolve a node it has just found
            # ("Node with given id does not belong to the document"): the click
            # was never sent, so find the button again and click it.
            if "does not belong to the document" not in str(error) or attempt == 2:
                raise
    WebDriverWait(browser, TIMEOUT).until(expected_conditions.staleness_of(button))
    return message(browser)


def assert_open_page(browser, approval: Approval, index: int, approvals_in: int) -> None:
    """The form, with whom it is for, the deadline in UTC with the time left, and the count."""
    from selenium.webdriver.common.by import By

    assert browser.title == TITLE
    assert browser.find_element(By.TAG_NAME, "h1").text == TITLE
    whom, due, count = facts(browser)
    assert whom == f"Answering as {APPROVERS[index]}"
    assert re.fullmatch(
        rf"Decision due by {re.escape(approval.deadline())} \(({TIME_LEFT})\)\.", due
    )
    assert count == f"{approvals_in} of 2 approvals"
    assert DESCRIPTION in browser.find_element(By.TAG_NAME, "form").text
    buttons = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "button[name=choice]")]
    assert buttons == ["Approve", "Reject"]


def answered_with(approvals_result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["approver"], a["value"], a["comment"]) for a in approvals_result["answers"]]


def assert_answered_between(answers: list[dict[str, Any]], start: datetime) -> None:
    """Each answer's time is RFC 3339 UTC, from this test's own clicks."""
    for answer in answers:
        answered = datetime.fromisoformat(answer["answeredAt"].replace("Z", "+00:00"))
        assert start <= answered <= datetime.now(UTC), answer


def screenshot(browser, tmp_path: Path, name: str) -> None:
    """Into tmp_path always; into $SCREENSHOTS_DIR (relative: to the repository) when set."""
    taken = tmp_path / name
    browser.save_screenshot(str(taken))
    target = os.environ.get(SCREENSHOTS_DIR)
    if target:
        shutil.copyfile(taken, REPO_ROOT / target / name)


@contextlib.contextmanager
def another_tab(browser) -> Iterator[None]:
    """A second tab for the block, so the first keeps a page loaded earlier; closed after."""
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        yield
    finally:
        browser.close()
        browser.switch_to.window(first)


# --- the tests --------------------------------------------------------------------------
def test_two_approve_and_the_workflow_resumes_approved_with_both_answers(
    browser, start_approval, tmp_path
) -> None:
    start = datetime.now(UTC)
    approval = start_approval()

    browser.get(approval.urls[ANA])
    assert_open_page(browser, approval, ANA, approvals_in=0)
    thanks = click(browser, APPROVE, "Ship it \u2713")
    assert thanks == "Thank you. Your answer was recorded: Approve."
    assert response_status(browser) == 200

    browser.get(approval.urls[BO])
    assert_open_page(browser, approval, BO, approvals_in=1)
    screenshot(browser, tmp_path, "approval-link-open.png")

    browser.get(approval.urls[ANA])  # ana again: answered, the request still open
    whom, due, count = facts(browser)
    assert (whom, count) == ("Answering as ana@example.com", "1 of 2 approvals")
    assert due.startswith(f"Decision due by {approval.deadline()} (")
    assert re.fullmatch(r"Already answered: Approve \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)\.",
                        message(browser))  # fmt: skip
    assert not has_form(browser)
    screenshot(browser, tmp_path, "approval-link-answered.png")

    browser.get(approval.urls[BO])
    assert click(browser, APPROVE) == "Thank you. Your answer was recorded: Approve."

    result = approval.run.finished()
    assert result.error is None, result.error
    assert result.result["decision"] == "approved"
    assert answered_with(result.result) == [
        ("ana@example.com", APPROVE, "Ship it \u2713"),
        ("bo@example.com", APPROVE, ""),
    ]
    assert_answered_between(result.result["answers"], start)
    assert approval.group().get("state") == "APPROVED"


def test_one_reject_decides_rejected(browser, start_approval) -> None:
    approval = start_approval()

    browser.get(approval.urls[BO])
    assert_open_page(browser, approval, BO, approvals_in=0)
    assert click(browser, REJECT, "Not during the freeze") == (
        "Thank you. Your answer was recorded: Reject."
    )

    result = approval.run.finished()
    assert result.error is None, result.error
    assert result.result["decision"] == "rejected"
    assert answered_with(result.result) == [("bo@example.com", REJECT, "Not during the freeze")]
    browser.get(approval.urls[ANA])
    assert message(browser) == "This request was decided: rejected."
    assert not has_form(browser)


def test_with_raise_on_reject_a_reject_raises_rejected_error_carrying_the_answers(
    browser, start_approval
) -> None:
    approval = start_approval(raiseOnReject=True)

    browser.get(approval.urls[ANA])
    click(browser, APPROVE, "fine")
    browser.get(approval.urls[ZOE])
    click(browser, REJECT, "no <script>")

    result = approval.run.finished()
    assert result.error is not None
    assert result.error["tags"] == ["RejectedError"]
    assert result.execution_id in result.error["message"]
    assert [(a["approver"], a["value"], a["comment"]) for a in result.error["answers"]] == [
        ("ana@example.com", APPROVE, "fine"),
        (ESCAPE_ME, REJECT, "no <script>"),
    ]
    assert (result.error["runID"], result.error["step"]) == (result.execution_id, "release")
    assert approval.group().get("state") == "REJECTED"


def test_a_third_answer_after_the_decision_gets_the_decided_page_and_reopens_nothing(
    browser, start_approval
) -> None:
    from selenium.webdriver.common.by import By

    approval = start_approval()
    browser.get(approval.urls[ZOE])  # loaded before the decision, answered after it
    assert_open_page(browser, approval, ZOE, approvals_in=0)
    # The label is text in a real browser, not markup.
    assert browser.find_elements(By.CSS_SELECTOR, "main b") == []

    with another_tab(browser):
        for approver in (ANA, BO):
            browser.get(approval.urls[approver])
            click(browser, APPROVE)
        result = approval.run.finished()
        decided = approval.group()
        browser.get(approval.urls[ZOE])  # opened after the decision: the outcome, no form
        assert facts(browser) == [f"Answering as {ESCAPE_ME}"]
        assert message(browser) == "This request was decided: approved."
        assert not has_form(browser)

    late = click(browser, REJECT, "Too late?")
    assert response_status(browser) == 409

    assert late == (
        "This request was already decided: approved. Your answer was recorded but did not count."
    )
    assert result.error is None, result.error
    assert [a["approver"] for a in result.result["answers"]] == APPROVERS[:2]
    # Nothing reopened: the group is as the decision left it.
    after = approval.group()
    assert after.update_time == decided.update_time
    assert after.get("state") == "APPROVED"
    # The late answer is recorded on Zoë's own link, LATE, never counted.
    link = approval.link(ZOE).to_dict()
    assert link["state"] == "LATE"
    assert '"value":"reject"' in link["payload"] and '"comment":"Too late?"' in link["payload"]
    status = requests.get(approval.urls[ZOE].replace("view=page", "view=status"), timeout=TIMEOUT)
    assert status.json()["state"] == "late"
    browser.get(approval.urls[ZOE])
    assert re.fullmatch(
        r"This request was decided: approved\. Already answered: Reject \(.+ UTC\)\.",
        message(browser),
    )


def test_the_same_approver_answering_twice_counts_once(browser, start_approval) -> None:
    approval = start_approval()
    # Ana opened her link three times before answering in the last tab.
    browser.get(approval.urls[ANA])
    with another_tab(browser):
        browser.get(approval.urls[ANA])
        with another_tab(browser):
            browser.get(approval.urls[ANA])
            assert click(browser, APPROVE, "first") == (
                "Thank you. Your answer was recorded: Approve."
            )
        # An older tab's form, the other button: 409, the "Already answered" page.
        assert re.fullmatch(r"Already answered: Approve \(.+ UTC\)\.", click(browser, REJECT))
        assert response_status(browser) == 409
    # The oldest tab's form, the same button: 200, already answered, nothing changes.
    assert re.fullmatch(r"Already answered: Approve \(.+ UTC\)\.", click(browser, APPROVE))
    assert response_status(browser) == 200

    # One approval of two: the workflow still waits, and the page says so.
    assert approval.run.thread.is_alive()
    assert approval.group().get("state") == "WAITING"
    browser.get(approval.urls[BO])
    assert_open_page(browser, approval, BO, approvals_in=1)
    click(browser, APPROVE)

    result = approval.run.finished()
    assert result.error is None, result.error
    assert answered_with(result.result) == [
        ("ana@example.com", APPROVE, "first"),
        ("bo@example.com", APPROVE, ""),
    ]


def test_scanners_fetching_every_link_record_nothing(browser, start_approval) -> None:
    approval = start_approval()
    links_before = [approval.link(i) for i in range(3)]
    group_before = approval.group()

    for _ in range(3):
        for url in approval.urls:
            fetched = requests.get(url, timeout=TIMEOUT)
            assert fetched.status_code == 200 and "<form" in fetched.text
            headed = requests.head(url, timeout=TIMEOUT)
            assert headed.status_code == 200 and headed.content == b""
    for index, url in enumerate(approval.urls):
        browser.get(url)
        assert_open_page(browser, approval, index, approvals_in=0)

    for index, before in enumerate(links_before):
        after = approval.link(index)
        assert after.update_time == before.update_time
        assert after.get("state") == "WAITING"
        assert "payload" not in after.to_dict()
    assert approval.group().update_time == group_before.update_time
    assert approval.run.thread.is_alive()

    for approver in (ANA, ZOE):
        browser.get(approval.urls[approver])
        click(browser, APPROVE)
    result = approval.run.finished()
    assert result.error is None, result.error
    assert [a["approver"] for a in result.result["answers"]] == [APPROVERS[ANA], ESCAPE_ME]
    assert approval.link(BO).get("state") == "WAITING"


def test_a_timeout_with_one_approval_carries_it_and_the_page_is_the_410_page(
    browser, start_approval, tmp_path
) -> None:
    approval = start_approval(timeoutSeconds=SHORT_TIMEOUT_SECONDS)
    browser.get(approval.urls[ZOE])  # loaded before the deadline, answered after it
    with another_tab(browser):
        browser.get(approval.urls[ANA])
        assert_open_page(browser, approval, ANA, approvals_in=0)
        click(browser, APPROVE, "in time")

        result = approval.run.finished()
        assert result.error is not None
        assert result.error["tags"] == ["TimeoutError"]
        assert answered_with(result.error) == [("ana@example.com", APPROVE, "in time")]
        group = approval.group()
        assert group.get("state") == "EXPIRED"
        gone = (
            f"The workflow stopped waiting for an answer at {minute(group.get('expiredAt'))}. "
            "An answer can no longer be recorded."
        )
        browser.get(approval.urls[BO])
        assert (facts(browser), message(browser)) == (["Answering as bo@example.com"], gone)
        assert not has_form(browser)
        assert response_status(browser) == 410
        screenshot(browser, tmp_path, "approval-link-expired.png")

    assert click(browser, APPROVE) == gone
    assert response_status(browser) == 410
    assert approval.link(ZOE).get("state") == "WAITING"
