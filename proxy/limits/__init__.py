"""Per-key limits, fleet-wide: requests and tokens per minute, and a carbon budget."""
