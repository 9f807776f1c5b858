"""Named fakes for process boundaries (tests and benchmarks use them as real HTTP servers)."""
