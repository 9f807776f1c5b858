"""Serving: per-request orchestration from parsed request to response and ledger row."""
