"""uvicorn's options for the client limits and the shutdown grace in `Settings`."""

from __future__ import annotations

import functools
from typing import Any

from proxy.config import Settings
from proxy.server.protocol import GuardedHttpProtocol


def server_options(settings: Settings) -> dict[str, Any]:
    """Protocol, keep-alive and graceful-shutdown options for `uvicorn.run` or `uvicorn.Config`."""
    protocol = functools.partial(  # a partial of an importable class pickles for --workers
        GuardedHttpProtocol,
        header_timeout_s=settings.server_header_timeout_s,
        max_header_bytes=settings.server_max_header_bytes,
        max_connections=settings.server_max_connections,
    )
    return {"http": protocol, "timeout_keep_alive": settings.server_keep_alive_timeout_s,
            # Past the grace uvicorn cancels what is left; serving turns that cancellation into
            # a 503 in OpenAI's envelope (an error event mid-stream) and a truthful row.
            "timeout_graceful_shutdown": settings.shutdown_grace_s}
