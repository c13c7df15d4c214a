"""The capacity model: read from RESULTS.md, computed as docs/scale.md says, kept in step."""

from __future__ import annotations

import pytest

from bench import scale


@pytest.fixture
def measured() -> scale.Measured:
    return scale.Measured(
        push={"1 h": scale.WaitCost(22, 1, 1), "24 h": scale.WaitCost(91, 24, 24)},
        poll={"1 h": scale.WaitCost(276, 0, 65), "24 h": scale.WaitCost(5796, 0, 1445)},
        cpu_ms={"seed": 0.8, "registered": 1.0, "unregistered": 0.9},
        commit="abc1234",
    )


def test_the_committed_results_parse_into_the_shape_of_push_and_poll():
    measured = scale.read_results()

    # Push: one external step (await) per hour-long slice; polling has none.
    # A read only for each slice that ended without the callback: none
    # within the first hour, 23 before it arrives in the 24th.
    assert measured.push["1 h"].external_steps == 1
    assert measured.push["1 h"].reads == 0
    assert measured.push["24 h"].external_steps == 24
    assert measured.push["24 h"].reads == 23
    assert measured.poll["24 h"].external_steps == 0
    assert measured.poll["24 h"].internal_steps > 10 * measured.push["24 h"].internal_steps
    assert set(measured.cpu_ms) == {"seed", "registered", "unregistered"}


def test_a_day_of_callbacks_adds_up_per_callback(measured):
    day = scale.daily(measured, "push", "1 h", 1_000)

    assert (day.steps_internal, day.steps_external, day.reads) == (22_000, 1_000, 1_000)
    assert (day.writes, day.deletes) == (3_000, 2_000)
    # Latency-bound: a 120 ms request holds 1/8 of an instance, more than its 1 ms of CPU.
    assert day.receiver_vcpu_s == pytest.approx(1_000 * 0.120 / 8)
    p = {k: f.value for k, f in scale.PRICES.items()}
    per_day = (
        22 * p["workflows_internal_per_1000"]
        + 1 * p["workflows_external_per_1000"]
        + 1_000 * (1 * p["firestore_read_per_100k"] + 3 * p["firestore_write_per_100k"]) / 1e5
        + 1_000 * 2 * p["firestore_delete_per_100k"] / 1e5
        + 15 * (p["run_vcpu_second"] + 0.25 * p["run_gib_second"])
        + 1_000 / 1e6 * p["run_per_million_requests"]
        + 1_000 * 1_000 / 2**30 * p["logging_per_gib"]
    )
    assert day.monthly_usd == pytest.approx(per_day * 30)


def test_polling_a_day_costs_more_than_pushing_it(measured):
    push = scale.daily(measured, "push", "24 h", 10_000)
    poll = scale.daily(measured, "poll", "24 h", 10_000)

    assert poll.monthly_usd > push.monthly_usd
    assert poll.reads == 10_000 * 1445


def test_docs_scale_md_holds_the_tables_of_the_committed_results():
    """Re-run `python -m bench.scale --write` after `make bench` when this fails."""
    assert scale.main(["--check"]) == 0
