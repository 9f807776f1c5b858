"""Any OpenAI-compatible HTTP server (vLLM, llama.cpp, Ollama, our worker) reached with httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from proxy.backends.base import Backend, UpstreamRequest, UpstreamResponse
from proxy.backends.http1_transport import KeepAliveTransport, ResponseStream
from proxy.errors import BackendUnavailable
from proxy.redact import basic_auth, redact_text, redact_url, without_userinfo

# A pool's connections: the lean HTTP/1.1 transport for http://, httpx's for https://.
Transport = KeepAliveTransport | httpx.AsyncBaseTransport

_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings",
          "responses": "/responses"}


def map_httpx_error(exc: httpx.HTTPError) -> BackendUnavailable:
    """Translate httpx's exceptions into the proxy's tree at the edge."""
    timed_out = isinstance(exc, httpx.TimeoutException)
    detail = redact_text(str(exc)) or type(exc).__name__
    return BackendUnavailable(f"{type(exc).__name__}: {detail}", timed_out=timed_out)


class OpenAICompatibleBackend(Backend):
    """Passes request bytes through and returns the upstream's bytes untouched."""

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        transport: Transport,
        api_key: SecretStr | None,
        timeouts: dict[str, float],
    ):
        self.url = redact_url(base_url)
        self.target_url = base_url
        self._base = without_userinfo(base_url)  # its user and password go in a header
        self._transport = transport
        self._extensions = {"timeout": timeouts}  # read by httpx's default transport
        self._headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if api_key is not None:
            self._headers["authorization"] = f"Bearer {api_key.get_secret_value()}"
        elif (credentials := basic_auth(base_url)) is not None:
            self._headers["authorization"] = credentials
        # Plain HTTP/1.1 upstreams: each endpoint's request head is built once, and a request
        # is that head, its length and its body, sent with no httpx objects in between.
        self._raw: KeepAliveTransport | None = None
        if isinstance(transport, KeepAliveTransport):
            self._raw = transport
            parts = urlsplit(self._base)
            self._origin = (parts.hostname or "", parts.port or 80)
            host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
            lines = "".join(f"{name}: {value}\r\n" for name, value in self._headers.items())
            self._heads = {
                endpoint: (f"POST {parts.path.rstrip('/')}{path} HTTP/1.1\r\nhost: {host}\r\n"
                           f"{lines}content-length: ").encode()
                for endpoint, path in _PATHS.items()
            }

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """POST the body; return when the status line and headers are in."""
        if self._raw is not None:
            body = request.payload.to_json_bytes()
            payload = b"".join((self._heads[request.endpoint], str(len(body)).encode(),
                                b"\r\n\r\n", body))
            try:
                return _RawResponse(await self._raw.exchange(self._origin, payload))
            except httpx.HTTPError as exc:
                raise map_httpx_error(exc) from exc
        http_request = httpx.Request(
            "POST",
            self._base + _PATHS[request.endpoint],
            content=request.payload.to_json_bytes(),
            headers=self._headers,
            extensions=self._extensions,
        )
        assert isinstance(self._transport, httpx.AsyncBaseTransport)
        try:
            # The transport directly: a passthrough needs no auth, redirect or cookie handling.
            response = await self._transport.handle_async_request(http_request)
        except httpx.HTTPError as exc:
            raise map_httpx_error(exc) from exc
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        """Close the pool's connections (shared by its backends; closing twice is harmless)."""
        await self._transport.aclose()


class _RawResponse(UpstreamResponse):
    def __init__(self, stream: ResponseStream):
        self._stream = stream
        self.status_code = stream.status
        self.content_type = "application/json"
        for name, value in stream.headers:
            lowered = name.lower()
            if lowered == b"content-type":
                self.content_type = value.decode("latin-1")
            elif lowered == b"x-sprout-decoding":
                self.decoding = value.decode("latin-1")
            elif lowered == b"x-sprout-device":
                self.device = value.decode("latin-1")
            elif lowered == b"x-sprout-kv-bytes" and value.isdigit():
                self.kv_bytes = int(value)

    async def read(self) -> bytes:
        try:
            return await self._stream.read()
        except httpx.HTTPError as exc:
            raise map_httpx_error(exc) from exc
        finally:
            await self._stream.aclose()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream.iter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise map_httpx_error(exc) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()


class _HttpxResponse(UpstreamResponse):
    def __init__(self, response: httpx.Response):
        self._response = response
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "application/json")
        self.decoding = response.headers.get("x-sprout-decoding")
        self.device = response.headers.get("x-sprout-device")
        kv_bytes = response.headers.get("x-sprout-kv-bytes")
        self.kv_bytes = int(kv_bytes) if kv_bytes is not None and kv_bytes.isdigit() else None

    async def read(self) -> bytes:
        try:
            return b"".join([chunk async for chunk in self._response.aiter_raw()])
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


def make_transport(
    base_urls: list[str], *, max_connections: int, connect_timeout_s: float, read_timeout_s: float
) -> Transport:
    """One connection pool per pool: lean keep-alive for http://, httpx's own for https://."""
    if all(url.startswith("http://") for url in base_urls):
        return KeepAliveTransport(connect_timeout_s=connect_timeout_s,
                                  read_timeout_s=read_timeout_s, max_idle=max_connections)
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections),
    )


def timeouts(connect_timeout_s: float, read_timeout_s: float) -> dict[str, float]:
    """Httpx's per-request timeout extension."""
    return {"connect": connect_timeout_s, "read": read_timeout_s, "write": read_timeout_s,
            "pool": connect_timeout_s}
