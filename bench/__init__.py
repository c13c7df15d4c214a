"""Benchmarks: callback ingestion under load (bench.ingest) and what a wait costs (bench.wait).

Run both with ``make bench`` (``python -m bench``); results go to bench/out/, or to
the tracked bench/RESULTS.md with ``--write``.
They are kept out of ``make test``: tests/bench runs each harness at a tiny size and
checks invariants only, never timings.
"""
