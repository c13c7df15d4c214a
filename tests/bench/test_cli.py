"""The benchmarks' command lines: bad numbers are one-line usage errors, tracked files stay put.

Nothing here runs a harness: the flags are refused before anything starts,
and the run that checks where the report goes has its harness replaced.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import bench.__main__ as bench_main
import bench.ingest.__main__ as ingest_module
import bench.wait.__main__ as wait_module
from bench import scale
from bench.ingest.harness import DEFAULTS
from bench.ingest.server import ServerSettings
from bench.wait.run import WaitConfig

wait_main = wait_module.main
ingest_main = ingest_module.main


def harness_started(*_args, **_kwargs) -> None:
    raise AssertionError("the flags were accepted and a harness was about to start")


@pytest.mark.parametrize(
    ("main", "argv", "error"),
    [
        (wait_main, ["--arrivals", "abc"], "argument --arrivals: not a number: 'abc'"),
        (wait_main, ["--arrivals", "5,-5"], "argument --arrivals: must be above 0, got '-5'"),
        (wait_main, ["--arrivals", "0"], "argument --arrivals: must be above 0"),
        (wait_main, ["--arrivals", "nan"], "argument --arrivals: not a finite number"),
        (wait_main, ["--arrivals", ","], "argument --arrivals: want at least one number"),
        (wait_main, ["--timeout", "-1"], "argument --timeout: must be above 0"),
        (wait_main, ["--timeout", "inf"], "argument --timeout: not a finite number"),
        (wait_main, ["--schedule", "1,2"], "argument --schedule: want INITIAL,MULTIPLIER,CAP"),
        (wait_main, ["--schedule", "0,2,60"], "argument --schedule: must be above 0"),
        (wait_main, ["--schedule", "1,0.5,60"], "want MULTIPLIER >= 1 and CAP >= INITIAL"),
        (wait_main, ["--schedule", "10,2,5"], "want MULTIPLIER >= 1 and CAP >= INITIAL"),
        (ingest_main, ["--callbacks", "0"], "argument --callbacks: must be at least 1"),
        (ingest_main, ["--callbacks", "1e3"], "argument --callbacks: not a whole number"),
        (ingest_main, ["--clients", "-3"], "argument --clients: must be at least 1"),
        (ingest_main, ["--threads", "8,x"], "argument --threads: not a whole number: 'x'"),
        (ingest_main, ["--threads", "0"], "argument --threads: must be at least 1"),
        (ingest_main, ["--workers", "0"], "argument --workers: must be at least 1"),
        (ingest_main, ["--phase-deadline", "-5"], "argument --phase-deadline: must be above 0"),
        (ingest_main, ["--scenarios", "seed,nope"], "argument --scenarios: want a comma-sep"),
        (ingest_main, ["--mode", "nope"], "argument --mode: invalid choice: 'nope'"),
        (ingest_main, ["--rounds", "2"], "--rounds: not for --mode scenarios"),
        (ingest_main, ["--mode", "profile", "--threads", "2"], "--threads: not for --mode profile"),
        (ingest_main, ["--mode", "side-by-side", "--scenarios", "seed"], "--scenarios: not for"),
        (ingest_main, ["--mode", "side-by-side", "--threads", "8,1"], "on one server shape"),
        (ingest_main, ["--mode", "side-by-side", "--rounds", "0"], "must be at least 1"),
        (bench_main.main, ["--profile-callbacks", "-1"], "must be at least 0"),
        (bench_main.main, ["--side-by-side-rounds", "-1"], "must be at least 0"),
        (bench_main.main, ["--callbacks", "abc"], "argument --callbacks: not a whole number"),
        (bench_main.main, ["--arrivals", "abc"], "argument --arrivals: not a number: 'abc'"),
        (bench_main.main, ["--write", "--skip-wait"], "--write replaces the tracked"),
        (bench_main.main, ["--write", "--side-by-side-rounds", "0"], "it needs a full run"),
        (bench_main.main, ["--write", "--profile-callbacks", "0"], "it needs a full run"),
        (bench_main.main, ["--write", "--results", "x.md"], "not allowed with argument --write"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_bad_flag_is_a_usage_error_not_a_traceback(main, argv, error, capsys, monkeypatch):
    # Should a flag get through, fail at once instead of running a harness.
    for module in (bench_main, wait_module):
        monkeypatch.setattr(module, "emulator", harness_started)
    monkeypatch.setattr(ingest_module, "run_ingest", harness_started)

    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    last = stderr.splitlines()[-1]
    assert ": error: " in last
    assert error in last


def test_an_arrival_past_the_timeout_is_one_line(monkeypatch):
    monkeypatch.setattr(wait_module, "emulator", harness_started)
    with pytest.raises(SystemExit) as exited:
        wait_main(["--arrivals", "5,100", "--timeout", "50"])

    assert exited.value.code == "error: --arrivals must be below --timeout"


def test_the_defaults_still_parse_into_the_default_configurations():
    args = bench_main._parser().parse_args([])

    assert bench_main.wait_config_from(args) == WaitConfig()
    assert bench_main._ingest_configs(args) == [
        DEFAULTS["scenarios"],
        DEFAULTS["profile"],
        DEFAULTS["side-by-side"],
    ]


def test_bench_sizes_the_scenarios_mode_and_skips_a_mode_at_zero():
    args = bench_main._parser().parse_args(
        ["--callbacks", "200", "--threads", "2", "--profile-callbacks", "0"]
    )

    scenarios, side_by_side = bench_main._ingest_configs(args)
    assert scenarios == replace(
        DEFAULTS["scenarios"], callbacks=200, servers=(ServerSettings(threads=2),)
    )
    assert side_by_side == DEFAULTS["side-by-side"]


def test_a_mode_takes_its_own_defaults_and_the_flags_given(monkeypatch):
    ran = []
    monkeypatch.setattr(
        ingest_module, "run_ingest", lambda config, log: ran.append(config) or Passed()
    )
    monkeypatch.setattr(ingest_module, "ingest_report", lambda runs: "")

    assert ingest_main(["--mode", "side-by-side", "--callbacks", "20", "--workers", "2"]) == 0

    assert ran == [
        replace(DEFAULTS["side-by-side"], callbacks=20, servers=(ServerSettings(workers=2),))
    ]


# --- where the report goes ----------------------------------------------------------
def test_only_write_points_at_the_tracked_files():
    parser = bench_main._parser()

    assert bench_main._destinations(parser.parse_args([])) == (
        bench_main.OUT / "RESULTS.md",
        bench_main.OUT / "scale.md",
    )
    assert bench_main._destinations(parser.parse_args(["--write"])) == (
        bench_main.TRACKED_RESULTS,
        scale.SCALE_DOC,
    )
    assert bench_main._destinations(parser.parse_args(["--results", "/tmp/r/R.md"])) == (
        Path("/tmp/r/R.md"),
        Path("/tmp/r/scale.md"),
    )


def test_bench_out_is_ignored_by_git(repo_root):
    assert "/bench/out/" in (repo_root / ".gitignore").read_text().splitlines()


class Passed:
    ok = True


@pytest.fixture
def bench_without_harnesses(monkeypatch, tmp_path):
    """python -m bench with the wait harness replaced, every file it may write in tmp_path.

    Stand-ins for the tracked bench/RESULTS.md and docs/scale.md too, so that
    even a broken destination rule cannot touch the real ones.
    """
    from contextlib import contextmanager

    @contextmanager
    def no_emulator():
        yield "127.0.0.1:1", None

    tracked = {"results": tmp_path / "RESULTS.md", "doc": tmp_path / "scale.md"}
    tracked["results"].write_text("tracked results\n")
    tracked["doc"].write_text("tracked doc\n")
    monkeypatch.setattr(bench_main, "emulator", no_emulator)
    monkeypatch.setattr(bench_main, "facts_markdown", lambda: "- cores: 2")
    monkeypatch.setattr(bench_main, "run_wait", lambda config, log: log("a wait") or Passed())
    monkeypatch.setattr(bench_main, "wait_section", lambda config, results: "## Waits")
    monkeypatch.setattr(bench_main, "OUT", tmp_path / "out")
    monkeypatch.setattr(bench_main, "TRACKED_RESULTS", tracked["results"])
    monkeypatch.setattr(scale, "SCALE_DOC", tracked["doc"])
    return tmp_path


def test_a_default_run_writes_to_bench_out_and_logs_progress_and_the_total(
    bench_without_harnesses, capsys
):
    assert bench_main.main(["--skip-ingest"]) == 0

    out = bench_without_harnesses / "out"
    assert (out / "RESULTS.md").read_text().endswith("## Waits\n")
    assert (bench_without_harnesses / "RESULTS.md").read_text() == "tracked results\n"
    assert (bench_without_harnesses / "scale.md").read_text() == "tracked doc\n"
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[bench 0:00] 1 stages; the report goes to ")
    assert err[1].startswith("[bench 0:00] stage 1/1: waits in virtual time")
    assert err[2] == "[bench 0:00] a wait"
    assert "no capacity model from a partial run" in err[-2]
    assert err[-1].startswith("[bench 0:00] done in 0:00 (0 s): all invariants held")


def test_write_recomputes_the_capacity_model_into_the_document(tmp_path):
    doc = tmp_path / "scale.md"
    doc.write_text(f"intro\n{scale.BEGIN}\nstale\n{scale.END}\noutro\n")
    logged: list[str] = []

    assert bench_main._write_scale(scale.RESULTS, doc, tracked=True, log=logged.append)

    expected = scale.tables(scale.read_results(scale.RESULTS))
    assert doc.read_text() == f"intro\n{scale.BEGIN}\n{expected}\n{scale.END}\noutro\n"


def test_progress_lines_carry_the_time_since_the_start(capsys):
    now = iter([0.0, 75.4, 3725.0])
    progress = bench_main.Progress(["ingest", "wait"], clock=lambda: next(now))

    progress.next_stage()
    progress.log("half way")

    assert capsys.readouterr().err.splitlines() == [
        "[bench 1:15] stage 1/2: ingest",
        "[bench 62:05] half way",
    ]
