"""Energy: meters (one hardware source per module), estimates, and attribution to requests."""
