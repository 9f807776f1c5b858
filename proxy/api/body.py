"""Reading and parsing request bodies: size limit, JSON, wire model, OpenAI-style messages."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.types import Message, Receive

from proxy.errors import BodyTimedOut, InvalidRequest, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)


async def read_body(receive: Receive, declared: str | None, limit_bytes: int,
                    timeout_s: float, *, arrived: bool = False) -> bytes:
    """The whole body within `timeout_s`, refusing more than `limit_bytes` without reading it.

    `declared` is the Content-Length header, if any; `arrived`, that the server has the whole
    body already (`proxy.server.protocol.body_in`): the usual small request is then taken
    without starting a clock. That first `receive()` has no timeout, so this must be the
    request's first reader of the body (it is: the route calls it before anything else).

    Chunks are appended to one growing buffer and dropped at once: a list of uvicorn's 64 KiB
    chunks, interleaved on the heap with everything else, is what kept RSS up after a burst of
    large uploads (measured in tests/integration/test_server_limits.py).
    """
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise PayloadTooLarge(_too_large(limit_bytes), code="request_too_large")
    first: Message | None = None
    if arrived:
        first = await receive()
        if first["type"] == "http.request" and not first.get("more_body", False):
            chunk = first.get("body", b"")
            if len(chunk) > limit_bytes:
                raise PayloadTooLarge(_too_large(limit_bytes), code="request_too_large")
            return bytes(chunk)  # the usual case: the body in one message, already here
    buffer = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                if first is not None:  # taken above, not the whole body
                    message, first = first, None
                else:
                    message = await receive()
                if message["type"] == "http.disconnect":
                    raise InvalidRequest("client disconnected while sending the body")
                chunk = message.get("body", b"")
                if len(buffer) + len(chunk) > limit_bytes:
                    raise PayloadTooLarge(_too_large(limit_bytes), code="request_too_large")
                if not message.get("more_body", False):
                    if not buffer:
                        return bytes(chunk)  # the body in one message
                    buffer += chunk
                    break
                buffer += chunk
    except TimeoutError as exc:
        raise BodyTimedOut(f"Request body not received within {timeout_s:g} s.",
                           code="request_timeout") from exc
    return bytes(buffer)


def _too_large(limit_bytes: int) -> str:
    return f"Request body too large: the limit is {limit_bytes} bytes."


def parse_body(model: type[M], body: bytes) -> M:
    """Validate the body as `model`; the first problem becomes a 400 naming the parameter."""
    if not body.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        location = ".".join(str(part) for part in error["loc"])
        if error["type"] == "json_invalid":
            raise InvalidRequest(
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                f"payload.) Detail: {error['msg']}",
                code="invalid_json",
            ) from exc
        if error["type"] == "model_type" and not location:
            raise InvalidRequest("The request body must be a JSON object.") from exc
        if error["type"] == "missing":
            message = f"Missing required parameter: '{location}'."
        else:
            message = f"Invalid value for '{location}': {error['msg']}."
        raise InvalidRequest(message, code="invalid_parameter", param=location) from exc
