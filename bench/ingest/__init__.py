"""bench.ingest: the receiver under load, side by side with the original sample."""
