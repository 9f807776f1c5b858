"""Authentication of API keys (master key and hashed virtual keys)."""
