"""The page for people: scanners may fetch it, only a person's POST answers it."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

FORM = {
    "title": 'Deploy <script>alert("t")</script> r\u00e9lease 1.4',
    "description": 'Approve "prod" & <b>go</b>?\nSecond line \u2713',
    "choices": [
        {"value": "approve", "label": "Approve <b>now</b>"},
        {"value": "reject", "label": "Reject \u2717"},
    ],
    "allowComment": True,
}


def register_page(callbacks, form=FORM, token="t0ken") -> str:
    callbacks.document("run-1_approve").set(
        {"state": "WAITING", "token": token, "forwardUrl": "", "form": json.dumps(form)}
    )
    return token


def page_url(token: str = "t0ken", **extra: str) -> str:
    return "/?" + urlencode(
        {"runID": "run-1", "step": "approve", "token": token, "view": "page", **extra}
    )


def answer(client, choice: str, comment: str = "", token: str = "t0ken"):
    return client.post(
        page_url(token),
        data={"choice": choice, "comment": comment},
        content_type="application/x-www-form-urlencoded",
    )


def test_the_page_shows_the_form_escaped_and_locked_down(client, callbacks):
    register_page(callbacks)

    response = client.get(page_url())

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    html = response.get_data(as_text=True)
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt; r\u00e9lease 1.4" in html
    assert "Approve &quot;prod&quot; &amp; &lt;b&gt;go&lt;/b&gt;?" in html
    assert "Approve &lt;b&gt;now&lt;/b&gt;" in html and "Reject \u2717" in html
    assert 'name="choice" value="approve"' in html and 'name="comment"' in html
    # The form posts back to the page URL, which carries the token: no cookie.
    assert 'method="post"' in html and "token=t0ken" in html
    # Nothing external: no src, no link, no external URL.
    assert "src=" not in html and "<link" not in html and "http" not in html.split("action")[0]
    headers = response.headers
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Robots-Tag"].startswith("noindex")


def test_scanners_fetching_the_page_change_nothing(client, callbacks):
    register_page(callbacks)
    before = callbacks.document("run-1_approve").get()

    for _ in range(3):
        assert client.get(page_url()).status_code == 200
    head = client.head(page_url())

    assert head.status_code == 200 and head.get_data() == b""
    after = callbacks.document("run-1_approve").get()
    assert after.update_time == before.update_time
    assert after.get("state") == "WAITING"


def test_a_choice_is_recorded_like_a_machine_callback(client, callbacks):
    register_page(callbacks)

    response = answer(client, "approve", comment="Looks good \u2713 <ok>")

    assert response.status_code == 200
    assert "Your answer was recorded: Approve &lt;b&gt;now&lt;/b&gt;." in response.get_data(
        as_text=True
    )
    stored = callbacks.document("run-1_approve").get().to_dict()
    assert (stored["state"], stored["value"]) == ("RECEIVED", "approve")
    payload = json.loads(stored["payload"])
    assert payload["value"] == "approve"
    assert payload["bodyEncoding"] == "form"
    assert payload["body"] == {"choice": "approve", "comment": "Looks good \u2713 <ok>"}


def test_only_the_listed_choices_are_accepted(client, callbacks):
    register_page(callbacks)

    response = answer(client, "approve-everything")

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "the choice is not one this form offers" in html
    # The page lists what it takes, escaped.
    assert "<li>Approve &lt;b&gt;now&lt;/b&gt;</li><li>Reject \u2717</li>" in html
    assert "approve-everything" not in html
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_a_second_visit_says_already_answered_even_after_the_workflow_consumed_it(
    client, callbacks, tombstone
):
    register_page(callbacks)
    assert answer(client, "reject").status_code == 200

    revisit = client.get(page_url()).get_data(as_text=True)
    assert "Already answered: Reject \u2717" in revisit
    assert answer(client, "approve").status_code == 409  # a different answer later

    tombstone("CONSUMED")  # what waitForResponse does
    consumed = client.get(page_url())
    assert consumed.status_code == 200
    assert "Already answered: Reject \u2717" in consumed.get_data(as_text=True)


def test_an_answer_leaves_no_answer_record_beside_the_callback(client, callbacks):
    # The CONSUMED tombstone keeps the answer until the TTL: a second
    # document per answer would only repeat it.
    register_page(callbacks)

    assert answer(client, "reject").status_code == 200

    assert [document.id for document in callbacks.stream()] == ["run-1_approve"]


def test_an_answer_record_from_an_earlier_receiver_still_says_already_answered(client, callbacks):
    """Migration: the receiver before tombstones kept the answer beside the callback.

    Its workflow deleted the callback document; the record lives until its
    TTL, and the page still reads it then, for its token only.
    """
    from datetime import UTC, datetime, timedelta

    from infra.function_modules import function_module

    token_hash = function_module("callback_store").token_hash
    callbacks.document("run-1_approve.answer").set(
        {
            "value": "reject",
            "form": json.dumps(FORM),
            "answeredAt": datetime(2026, 11, 30, 9, 15, tzinfo=UTC),
            "tokenHash": token_hash("t0ken"),
            "expireAt": datetime.now(UTC) + timedelta(days=1),
        }
    )

    shown = client.get(page_url())
    stranger = client.get(page_url("wrong"))

    assert shown.status_code == 200
    assert "Already answered: Reject \u2717 (2026-11-30 09:15 UTC)." in shown.get_data(as_text=True)
    assert stranger.status_code == 404


@pytest.mark.parametrize("token", ["wrong", ""])
def test_a_wrong_token_or_unknown_callback_shows_expired_or_unknown(client, callbacks, token):
    register_page(callbacks)

    response = client.get(page_url(token))
    unknown = client.get(page_url().replace("run-1", "run-2"))

    for page in (response, unknown):
        assert page.status_code == 404
        assert "expired or is unknown" in page.get_data(as_text=True)
        assert page.headers["Referrer-Policy"] == "no-referrer"
    assert answer(client, "approve", token=token).status_code == 404
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_a_registration_without_a_form_has_no_page(client, callbacks, register):
    token = register()

    response = client.get(page_url(token))

    assert response.status_code == 404
    assert answer(client, "approve", token=token).status_code == 404


def test_a_person_never_sees_json_or_a_stack_trace(client):
    bad_ids = client.get("/?runID=a_b&step=s&view=page")
    method = client.delete(page_url())

    for response in (bad_ids, method):
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "Traceback" not in response.get_data(as_text=True)
        assert not response.get_data(as_text=True).startswith("{")
    assert (bad_ids.status_code, method.status_code) == (400, 405)


def test_machine_callers_keep_the_seed_compatible_get(client, callbacks):
    register_page(callbacks)

    response = client.get("/?runID=run-1&step=approve&token=t0ken&value=approve")

    assert response.status_code == 200
    assert response.get_json()["status"] == "received"
    assert callbacks.document("run-1_approve").get().get("value") == "approve"


def test_an_unexpected_error_is_a_page_too(make_client):
    client = make_client(CALLBACKS_MAX_BODY_BYTES="lots")  # every request fails: 500

    response = client.get(page_url())

    assert response.status_code == 500
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Something went wrong" in response.get_data(as_text=True)


def test_the_form_posts_to_a_relative_url_so_https_stays_https(client, callbacks):
    # Behind Cloud Run's TLS proxy the app may see http://; an absolute
    # http:// action on an https page would be blocked (and leak the token).
    register_page(callbacks)

    html = client.get(page_url(), base_url="http://behind-the-proxy").get_data(as_text=True)

    assert 'action="?runID=run-1&amp;step=approve&amp;token=t0ken&amp;view=page"' in html
    assert "http://behind-the-proxy" not in html


def test_a_comment_over_the_limit_is_refused_and_nothing_is_recorded(client, callbacks):
    register_page(callbacks)

    response = answer(client, "approve", comment="x" * 2_001)

    assert response.status_code == 422
    assert "longer than 2000 characters" in response.get_data(as_text=True)
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"
    assert answer(client, "approve", comment="x" * 2_000).status_code == 200
