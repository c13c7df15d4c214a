"""The Google Chat webhook stand-in accepts what Google Chat accepts, and nothing else."""

from __future__ import annotations

import requests

from local.chat_webhook import ChatLink, ChatWebhook, links_in

CHAT_JSON = "application/json; charset=UTF-8"


def test_a_text_message_is_kept_and_handed_on() -> None:
    seen: list[str] = []
    with ChatWebhook(seen.append) as chat:
        response = requests.post(chat.url, json={"text": "hello <http://x/a?b=1|open>"}, timeout=5)

    assert response.status_code == 200
    assert response.json()["text"] == "hello <http://x/a?b=1|open>"
    assert chat.messages == seen == ["hello <http://x/a?b=1|open>"]


def test_what_google_chat_refuses_is_refused() -> None:
    with ChatWebhook() as chat:
        not_json = requests.post(
            chat.url, data="text=hi", headers={"Content-Type": "text/plain"}, timeout=5
        )
        no_text = requests.post(chat.url, json={"message": "hi"}, timeout=5)
        empty = requests.post(chat.url, json={"text": "  "}, timeout=5)
        broken = requests.post(chat.url, data=b"{", headers={"Content-Type": CHAT_JSON}, timeout=5)
        too_long = requests.post(chat.url, json={"text": "x" * 32_001}, timeout=5)

    assert [r.status_code for r in (not_json, no_text, empty, broken, too_long)] == [400] * 5
    assert chat.messages == []


def test_links_are_read_from_chat_markup_in_order() -> None:
    text = "for a: <https://r.example/?runID=1&step=s|page> and <http://b/|b's page>, not <nope>"

    assert links_in(text) == [
        ChatLink("https://r.example/?runID=1&step=s", "page"),
        ChatLink("http://b/", "b's page"),
    ]
