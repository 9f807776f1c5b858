"""Any provider litellm supports, reached through the litellm library (imported lazily)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from pydantic import SecretStr

from proxy.backends.base import Backend, BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.errors import BackendUnavailable
from proxy.protocol.errors import ErrorEnvelope
from proxy.redact import redact_url


def _litellm() -> Any:
    # litellm fetches a price map at import unless told to use its bundled copy.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.drop_params = False
    return litellm


class LiteLLMBackend(Backend):
    """Calls litellm's `acompletion` / `atext_completion` / `aembedding` / `aresponses`.

    Results are re-emitted as OpenAI JSON (Responses streams as typed `event:` lines).
    """

    kind = "litellm"

    def __init__(self, api_base: str | None, api_key: SecretStr | None, timeout_s: float):
        self.url = redact_url(api_base) if api_base else "litellm:default"
        self.target_url = api_base or self.url
        self._api_base = api_base
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._lib = _litellm()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Run the call; a stream returns once litellm has opened it."""
        kwargs: dict[str, Any] = request.payload.model_dump(exclude_unset=True)
        kwargs["timeout"] = self._timeout_s
        kwargs["num_retries"] = 0  # serving retries across backends itself
        if self._api_base:
            kwargs["api_base"] = self._api_base
        if self._api_key is not None:
            kwargs["api_key"] = self._api_key.get_secret_value()
        call = {
            "chat": self._lib.acompletion,
            "completions": self._lib.atext_completion,
            "embeddings": self._lib.aembedding,
            "responses": self._lib.aresponses,
        }[request.endpoint]
        if request.endpoint == "embeddings":
            kwargs.pop("stream", None)
        try:
            result = await call(**kwargs)
        except Exception as exc:
            return self._error_response(exc)
        if request.stream:
            return _LiteLLMStream(result, self, typed=request.endpoint == "responses")
        return BufferedResponse(200, result.model_dump_json(exclude_none=True).encode())

    def _error_response(self, exc: Exception) -> UpstreamResponse:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, self._lib.Timeout):
            raise BackendUnavailable(f"litellm timeout: {exc}", timed_out=True) from exc
        if not isinstance(status, int) or status >= 500 or status == 429:
            raise BackendUnavailable(f"litellm: {exc}", status_code=status) from exc
        envelope = ErrorEnvelope.of(str(getattr(exc, "message", exc)), "invalid_request_error")
        return BufferedResponse(status, envelope.to_json_bytes())

    def map_stream_error(self, exc: Exception) -> BackendUnavailable:
        """A failure after the stream opened."""
        return BackendUnavailable(
            f"litellm stream: {exc}", timed_out=isinstance(exc, self._lib.Timeout)
        )


class _LiteLLMStream(UpstreamResponse):
    def __init__(self, stream: Any, backend: LiteLLMBackend, *, typed: bool = False):
        self.status_code = 200
        self.content_type = "text/event-stream"
        self._stream = stream
        self._backend = backend
        self._typed = typed  # Responses events: `event: <type>` lines and no [DONE]

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_bytes()])

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                data = b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
                if self._typed:
                    data = f"event: {getattr(chunk, 'type', 'message')}\n".encode() + data
                yield data
        except Exception as exc:
            raise self._backend.map_stream_error(exc) from exc
        if not self._typed:
            yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()
