"""Accounting: the append-only request ledger and its database."""
