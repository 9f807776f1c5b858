"""Alembic migrations; the wheel ships this folder as `proxy.migrations` (see setup.py)."""
