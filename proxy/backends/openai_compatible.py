"""Any OpenAI-compatible HTTP server (vLLM, llama.cpp, Ollama, our worker) reached with httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from pydantic import SecretStr

from proxy.backends.base import Backend, UpstreamRequest, UpstreamResponse
from proxy.errors import BackendUnavailable

_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


def map_httpx_error(exc: httpx.HTTPError) -> BackendUnavailable:
    """Translate httpx's exceptions into the proxy's tree at the edge."""
    timed_out = isinstance(exc, httpx.TimeoutException)
    detail = str(exc) or type(exc).__name__
    return BackendUnavailable(f"{type(exc).__name__}: {detail}", timed_out=timed_out)


class OpenAICompatibleBackend(Backend):
    """Passes request bytes through and returns the upstream's bytes untouched."""

    kind = "openai"

    def __init__(self, base_url: str, client: httpx.AsyncClient, api_key: SecretStr | None):
        self.url = base_url
        self._client = client
        self._headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if api_key is not None:
            self._headers["authorization"] = f"Bearer {api_key.get_secret_value()}"

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """POST the body; return when the status line and headers are in."""
        http_request = self._client.build_request(
            "POST",
            self.url + _PATHS[request.endpoint],
            content=request.payload.to_json_bytes(),
            headers=self._headers,
        )
        try:
            response = await self._client.send(http_request, stream=True)
        except httpx.HTTPError as exc:
            raise map_httpx_error(exc) from exc
        return _HttpxResponse(response)


class _HttpxResponse(UpstreamResponse):
    def __init__(self, response: httpx.Response):
        self._response = response
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise map_httpx_error(exc) from exc
        finally:
            await self._response.aclose()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise map_httpx_error(exc) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


def make_client(
    *, max_connections: int, connect_timeout_s: float, read_timeout_s: float
) -> httpx.AsyncClient:
    """One pooled client per pool; the read timeout bounds the wait for each chunk."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        trust_env=False,
    )
