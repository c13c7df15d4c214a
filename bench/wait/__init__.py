"""bench.wait: what waiting for a callback costs, under a virtual clock."""
