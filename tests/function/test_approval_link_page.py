"""An approver's page: whom it is for, until when, how many approvals are in; GET never writes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.function.approval_builder import consume, create_approval, end_group, start_wait
from tests.function.conftest import COLLECTION

FORM = {
    "title": 'Deploy <script>alert("t")</script> 1.4',
    "description": "Prod & staging <b>now</b>",
    "choices": [
        {"value": "approve", "label": "Approve <b>it</b>"},
        {"value": "reject", "label": "Reject", "reject": True},
    ],
    "allowComment": True,
}
LABELS = ["<script>alert(1)</script>@example.com", "bob@example.com", "carol@example.com"]
SCRIPT_LABEL = "&lt;script&gt;alert(1)&lt;/script&gt;@example.com"


@pytest.fixture
def approval(firestore_client):
    return create_approval(firestore_client, COLLECTION, LABELS, form=FORM)


def text(response) -> str:
    return response.get_data(as_text=True)


def versions(callbacks) -> dict[str, datetime]:
    return {snapshot.id: snapshot.update_time for snapshot in callbacks.stream()}


def page_log(capsys) -> dict:
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    return [entry for entry in entries if "outcome" in entry][-1]


def test_the_open_page_says_whom_until_when_and_how_many(
    client, callbacks, approval, firestore_client, capsys
):
    # One approval in, and one reject, which does not count as an approval.
    assert client.get(approval.url(1, value="approve")).status_code == 200
    assert client.get(approval.url(2, value="reject")).status_code == 200
    capsys.readouterr()

    response = client.get(approval.page_url(0))

    assert response.status_code == 200
    html = text(response)
    assert f"Answering as {SCRIPT_LABEL}" in html
    assert "<script>" not in html and "<b>" not in html
    assert "Deploy &lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt; 1.4" in html
    assert "Prod &amp; staging &lt;b&gt;now&lt;/b&gt;" in html
    # Before the wait starts: the link's own validity, and M = every approver.
    expire_at = callbacks.document(approval.link_id(0)).get().get("expireAt")
    assert f"This link is valid until {expire_at:%Y-%m-%d %H:%M} UTC (6 d 23 h left)." in html
    assert "1 of 3 approvals" in html
    assert 'name="choice" value="approve"' in html and "Approve &lt;b&gt;it&lt;/b&gt;" in html
    assert "Decision due" not in html
    # Two reads: the link with its group, then the other links.
    assert page_log(capsys)["firestoreCalls"] == 2
    headers = response.headers
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Robots-Tag"].startswith("noindex")
    assert "<script" not in html.lower() and "src=" not in html


def test_once_the_wait_runs_the_page_shows_its_deadline_and_quorum(
    client, approval, firestore_client
):
    deadline = datetime.now(UTC) + timedelta(hours=3, minutes=20, seconds=30)
    start_wait(firestore_client, COLLECTION, approval, deadline, quorum=2)
    assert client.get(approval.url(1, value="approve")).status_code == 200

    html = text(client.get(approval.page_url(0)))

    assert f"Decision due by {deadline:%Y-%m-%d %H:%M} UTC (3 h 20 min left)." in html
    assert "1 of 2 approvals" in html
    assert "valid until" not in html


def test_scanners_fetching_every_link_write_nothing(client, callbacks, approval):
    before = versions(callbacks)

    for index in range(len(LABELS)):
        for _ in range(2):
            assert client.get(approval.page_url(index)).status_code == 200
        head = client.head(approval.page_url(index))
        assert head.status_code == 200 and head.get_data() == b""

    assert versions(callbacks) == before


def test_an_answered_link_says_already_answered_with_the_count(client, approval):
    assert client.post(approval.page_url(1), data={"choice": "approve"}).status_code == 200

    html = text(client.get(approval.page_url(1)))

    assert "Already answered: Approve &lt;b&gt;it&lt;/b&gt; (" in html
    assert "Answering as bob@example.com" in html
    assert "1 of 3 approvals" in html
    assert "<form" not in html


def test_a_consumed_answer_still_counts_and_shows(client, approval, firestore_client):
    assert client.get(approval.url(1, value="approve")).status_code == 200
    consume(firestore_client, COLLECTION, approval, 1)

    assert "1 of 3 approvals" in text(client.get(approval.page_url(0)))
    assert "Already answered: Approve" in text(client.get(approval.page_url(1)))


def test_a_decided_request_shows_its_outcome_and_no_form(client, approval, firestore_client):
    assert client.get(approval.url(1, value="approve")).status_code == 200
    end_group(firestore_client, COLLECTION, approval, "APPROVED")

    waiting = client.get(approval.page_url(0))
    answered = client.get(approval.page_url(1))

    assert waiting.status_code == answered.status_code == 200
    assert "This request was decided: approved." in text(waiting)
    assert "<form" not in text(waiting)
    assert "This request was decided: approved. Already answered: Approve" in text(answered)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("EXPIRED", "The workflow stopped waiting for an answer at "),
        ("CANCELLED", "This request was cancelled at "),
    ],
)
def test_an_expired_or_cancelled_request_is_the_410_page(
    client, approval, firestore_client, state, message
):
    when = end_group(firestore_client, COLLECTION, approval, state)

    response = client.get(approval.page_url(0))

    assert response.status_code == 410
    assert f"{message}{when:%Y-%m-%d %H:%M} UTC. An answer can no longer be recorded." in text(
        response
    )
    assert "<form" not in text(response)
    post = client.post(approval.page_url(0), data={"choice": "approve"})
    assert post.status_code == 410


def test_past_the_deadline_the_page_is_the_410_page_before_the_wait_marks_it(
    client, callbacks, approval, firestore_client
):
    # The wait times out at its read at the deadline and marks the group
    # EXPIRED only after it: an answer taken in between would be 200 and
    # never counted, so from the deadline on a link is gone.
    deadline = datetime.now(UTC) - timedelta(seconds=1)
    start_wait(firestore_client, COLLECTION, approval, deadline, quorum=2)
    before = versions(callbacks)

    shown = client.get(approval.page_url(1))
    answered = client.post(approval.page_url(1), data={"choice": "approve"})

    expired = f"stopped waiting for an answer at {deadline:%Y-%m-%d %H:%M} UTC"
    for response in (shown, answered):
        assert response.status_code == 410
        assert expired in text(response) and "<form" not in text(response)
    assert versions(callbacks) == before


def test_a_wrong_token_sees_the_unknown_page_and_nothing_else(client, approval, capsys):
    capsys.readouterr()

    response = client.get(approval.page_url(0, token="f" * 64))

    assert response.status_code == 404
    html = text(response)
    assert "expired or is unknown" in html and "Answering as" not in html
    assert page_log(capsys)["firestoreCalls"] == 1  # no other link was read


def test_answering_on_the_page_thanks_the_approver(client, callbacks, approval):
    response = client.post(
        approval.page_url(0), data={"choice": "reject", "comment": "Not on a Friday"}
    )

    assert response.status_code == 200
    html = text(response)
    assert "Thank you. Your answer was recorded: Reject." in html
    assert f"Answering as {SCRIPT_LABEL}" in html
    record = json.loads(callbacks.document(approval.link_id(0)).get().get("payload"))
    assert record == {
        "value": "reject",
        "comment": "Not on a Friday",
        "approver": LABELS[0],
        "answeredAt": record["answeredAt"],
    }
    again = client.post(approval.page_url(0), data={"choice": "approve"})
    assert again.status_code == 409
    assert "Already answered: Reject" in text(again)


def test_an_answer_after_the_decision_gets_the_decided_page(client, approval, firestore_client):
    end_group(firestore_client, COLLECTION, approval, "REJECTED")

    response = client.post(approval.page_url(2), data={"choice": "approve"})

    assert response.status_code == 409
    assert (
        "This request was already decided: rejected. Your answer was recorded but did not count."
        in text(response)
    )


def test_a_choice_the_page_does_not_offer_gets_the_422_page_listing_the_choices(
    client, callbacks, approval
):
    response = client.post(approval.page_url(0), data={"choice": "APPROVE_EVERYTHING"})

    assert response.status_code == 422
    html = text(response)
    assert "the choice is not one this form offers" in html
    assert "<li>Approve &lt;b&gt;it&lt;/b&gt;</li><li>Reject</li>" in html
    assert callbacks.document(approval.link_id(0)).get().get("state") == "WAITING"


def test_a_single_form_page_shows_until_when_its_link_is_valid(client, register, callback_url):
    token = register(form_json=json.dumps(FORM))

    html = text(client.get(callback_url(token=token, view="page")))

    assert re.search(
        r"This link is valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC \(6 d 23 h left\)\.", html
    )
    assert "Answering as" not in html
