"""local.environment: variables for the length of a block, then exactly as before."""

from __future__ import annotations

import os

import pytest

from local.environment import environment


def test_values_hold_in_the_block_and_the_previous_state_returns(monkeypatch) -> None:
    monkeypatch.setenv("WC_TEST_SET", "before")
    monkeypatch.delenv("WC_TEST_UNSET", raising=False)

    with environment({"WC_TEST_SET": "during", "WC_TEST_UNSET": "during"}):
        assert os.environ["WC_TEST_SET"] == "during"
        assert os.environ["WC_TEST_UNSET"] == "during"

    assert os.environ["WC_TEST_SET"] == "before"
    assert "WC_TEST_UNSET" not in os.environ


def test_the_previous_state_returns_after_an_error_and_a_change_in_the_block(monkeypatch):
    monkeypatch.delenv("WC_TEST_UNSET", raising=False)

    with pytest.raises(RuntimeError), environment({"WC_TEST_UNSET": "during"}):
        os.environ["WC_TEST_UNSET"] = "changed inside"
        raise RuntimeError

    assert "WC_TEST_UNSET" not in os.environ
