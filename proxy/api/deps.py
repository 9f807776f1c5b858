"""Dependency aliases for routes."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from proxy.state import AppState


def get_state(request: Request) -> AppState:
    """The state the lifespan built."""
    return cast(AppState, request.state.sprout)


StateDep = Annotated[AppState, Depends(get_state)]
