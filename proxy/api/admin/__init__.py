"""Admin REST API (master key only): keys, requests, statistics, pools, optimiser, evaluator."""
