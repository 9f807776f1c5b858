"""create_app: the one composition root."""

from __future__ import annotations

import functools
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy import __version__
from proxy.api import health, metrics, openai, responses
from proxy.api.admin import keys as admin_keys
from proxy.api.admin import operations as admin_operations
from proxy.api.admin import requests as admin_requests
from proxy.api.admin import stats as admin_stats
from proxy.api.admin import timeseries as admin_timeseries
from proxy.api.schema import openapi_document
from proxy.apidocs import page as apidocs_page
from proxy.config import Settings
from proxy.dashboard import page as dashboard_page
from proxy.errors import ProxyError
from proxy.lifespan import lifespan
from proxy.protocol.errors import ErrorEnvelope

log = logging.getLogger(__name__)


class SproutApp(FastAPI):
    """FastAPI, with the inference routes answered before its middleware stack.

    A proxied request is short, and Starlette's and FastAPI's layers (error and exception
    middleware, the exit stack, routing, telemetry) were about a tenth of its CPU
    (bench/overhead.py under py-spy). The handlers never raise for a client's mistake or an
    upstream's failure (each is answered in OpenAI's envelope with its ledger row), so those
    layers have nothing to do for them; anything unexpected still gets an enveloped 500. Every
    other route, and the OpenAPI schema, are FastAPI's as usual.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The inference routes directly; everything else through FastAPI."""
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = openai.FAST_PATHS.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                request = Request(scope, receive)
                try:
                    response = await openai.serve(request, endpoint)
                except Exception as exc:  # a bug: still OpenAI's envelope, and logged
                    response = await _unexpected_error(request, exc)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    """Build the ASGI app; long-lived objects are made in the lifespan, not here."""
    app = SproutApp(
        title="sprout-proxy",
        summary="OpenAI-compatible proxy that cuts and accounts for LLM inference carbon.",
        version=__version__,
        lifespan=functools.partial(lifespan, settings=settings),
        docs_url=None, redoc_url=None,  # served from vendored assets: proxy/apidocs/
    )
    app.include_router(openai.router)
    app.include_router(responses.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    for router in (admin_keys.router, admin_requests.router, admin_stats.router,
                   admin_timeseries.router, admin_operations.router, dashboard_page.router,
                   apidocs_page.router):
        app.include_router(router)
    app.openapi = functools.partial(openapi_document, app)  # type: ignore[method-assign]
    app.add_exception_handler(ProxyError, _proxy_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def create_app_from_environment() -> FastAPI:
    """The app of one of `serve --workers N`'s processes: its settings from the environment."""
    return create_app(Settings())


def _envelope(status: int, message: str, error_type: str, code: str | None = None,
              param: str | None = None) -> Response:
    body = ErrorEnvelope.of(message, error_type, code=code, param=param).to_json_bytes()
    return Response(body, status_code=status, media_type="application/json")


async def _proxy_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    response = _envelope(exc.status_code, exc.message, exc.error_type, exc.code, exc.param)
    response.headers.update(exc.headers)
    return response


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"Unknown request URL: {_request.method} {_request.url.path}."
    response = _envelope(exc.status_code, message, error_type)
    response.headers.update(exc.headers or {})
    return response


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    location = ".".join(str(part) for part in first["loc"] if part not in ("body", "query"))
    return _envelope(400, f"Invalid value for '{location}': {first['msg']}.",
                     "invalid_request_error", "invalid_parameter", location or None)


async def _unexpected_error(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return _envelope(500, "internal proxy error", "server_error")
