"""The admin guard: every admin route needs the master key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from proxy.api.deps import get_state
from proxy.auth.keys import MASTER_KEY_ID
from proxy.errors import AuthenticationFailed
from proxy.state import AppState


def require_admin(request: Request) -> AppState:
    """The state, once the caller has shown the master key (401 otherwise)."""
    state = get_state(request)
    if state.keys.authenticate(request.headers.get("authorization")) != MASTER_KEY_ID:
        raise AuthenticationFailed("This endpoint needs the admin (master) key.",
                                   code="admin_key_required")
    return state


AdminDep = Annotated[AppState, Depends(require_admin)]
