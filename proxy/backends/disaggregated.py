"""DisaggregatedBackend: one request as two legs, prefill on one pool and decode on another.

The proxy is the P/D router vLLM deployments put in front of their instances (with the NIXL
or LMCache KV connectors), and sprout workers speak the same protocol
(`worker/pd_protocol.py`). For a pool of kind `disaggregated` naming `prefill_pool` and
`decode_pool`, `send`:

1. sends the prefill leg (`proxy/protocol/disaggregation.py`: one token, not streamed,
   `kv_transfer_params` asking for a remote decode) to a backend of the prefill pool, the next
   one if it fails;
2. sends the client's request, streamed if it asked, to a backend of the decode pool with
   the `kv_transfer_params` the prefill returned; a decode backend that fails before its
   answer starts is replaced by the next (the cache stays pullable until it expires);
3. once a decode answer starts, releases the cache a sprout worker holds
   (`DELETE {prefill backend}/kv/{id}`; vLLM frees its blocks itself once pulled).

Each leg holds an admission slot of its member pool while it runs, so a member pool's
`max_concurrency` bounds its own requests and the legs together. Failures fall back to one
pool doing both phases: a prefill that no backend answers (or whose pool is full, queue
included) sends the client's request to the decode pool whole; a decode that no backend
starts (or whose pool is full) sends it to the prefill pool whole. A fallback's answer names
the pool that served it (`served_pool`): the row is charged that pool's profile, grid and
embodied rate. A cancellation (client gone, deadline) closes whichever leg is open and
releases the held cache. The answer names its device, the technique and the prefill
phase (`PrefillPhase`), which the ledger row records.

Serving sees one backend: its retries, breakers, stream tap and ledger row work unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx

from proxy.backends.base import Backend, PrefillPhase, UpstreamRequest, UpstreamResponse
from proxy.energy.devices import DeviceMap
from proxy.errors import BackendUnavailable, Overloaded
from proxy.httpclient import job_client
from proxy.pools.config import PoolConfig
from proxy.pools.registry import Pool
from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest
from proxy.protocol.disaggregation import PrefillAnswer, decode_leg, monolithic, prefill_leg

log = logging.getLogger(__name__)

RELEASE_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Held:
    """A cache a sprout prefill worker holds for this request (released by the proxy)."""

    release_url: str
    headers: dict[str, str]


class DisaggregatedBackend(Backend):
    """The one backend of a `disaggregated` pool."""

    kind = "disaggregated"

    def __init__(self, config: PoolConfig, prefill: Pool, decode: Pool,
                 devices: DeviceMap) -> None:
        self.config = config
        self.prefill = prefill
        self.decode = decode
        self.devices = devices
        self.url = self.target_url = f"pd:{prefill.name}>{decode.name}"
        self._client = job_client(RELEASE_TIMEOUT_S)
        self._releases: set[asyncio.Task[None]] = set()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Both legs; the decode's answer (or a fallback's) once its status is known."""
        payload = request.payload
        if not isinstance(payload, ChatCompletionRequest | CompletionRequest):
            raise BackendUnavailable(f"a disaggregated pool serves chat and completions, "
                                     f"not {request.endpoint}")
        endpoint, stream = request.endpoint, request.stream
        try:
            phase, params, held = await self._prefill(endpoint, payload)
        except (BackendUnavailable, Overloaded) as exc:
            log.warning("pool %s: prefill leg not served (%s); decoding pool %s does it all",
                        self.config.name, exc, self.decode.name)
            whole = UpstreamRequest(endpoint, monolithic(payload, self._model(self.decode,
                                                                              payload)), stream)
            response, backend = await self._leg(self.decode, whole)
            return self._answer(response, self.decode, backend, "monolithic:prefill-failed",
                                whole=True)
        try:
            leg = UpstreamRequest(endpoint, decode_leg(
                payload, self._model(self.decode, payload), params), stream)
            try:
                response, backend = await self._leg(self.decode, leg)
            except (BackendUnavailable, Overloaded) as exc:
                log.warning("pool %s: no decode backend started (%s); prefill pool %s does "
                            "it all", self.config.name, exc, self.prefill.name)
                whole = UpstreamRequest(endpoint, monolithic(payload, self._model(
                    self.prefill, payload)), stream)
                response, backend = await self._leg(self.prefill, whole)
                return self._answer(response, self.prefill, backend,
                                    "monolithic:decode-failed", whole=True)
        finally:
            self._release(held)  # the decode has pulled, failed, or was cancelled
        moved = response.kv_bytes if response.kv_bytes is not None else phase.kv_bytes
        phase = dataclasses.replace(phase, kv_bytes=moved)
        return self._answer(response, self.decode, backend, "disaggregated", phase)

    async def _prefill(self, endpoint: Any, payload: ChatCompletionRequest | CompletionRequest
                       ) -> tuple[PrefillPhase, dict[str, Any] | None, _Held | None]:
        leg = UpstreamRequest(endpoint, prefill_leg(payload, self._model(self.prefill, payload)),
                              stream=False)
        response, backend = await self._leg(self.prefill, leg)
        try:
            body = await response.read()
        finally:
            self.prefill.unclaim(backend)
            self.prefill.admission.release()
        answer = PrefillAnswer.parse(body)
        if response.status_code != 200 or answer is None:
            raise BackendUnavailable(f"prefill leg answered HTTP {response.status_code}",
                                     status_code=response.status_code)
        params = answer.kv_transfer_params
        kv_bytes = response.kv_bytes
        if kv_bytes is None and answer.usage is not None:  # vLLM reports none: estimate
            kv_bytes = answer.usage.prompt_tokens * self.config.kv_bytes_per_token
        held = None
        entry = (params or {}).get("remote_request_id")
        if response.kv_bytes is not None and isinstance(entry, str):  # a sprout worker
            held = _Held(f"{backend.target_url}/kv/{entry}", self.prefill.config.auth_headers())
        device = response.device or self.devices.device_for(self.prefill.name, backend.url)
        return (PrefillPhase(self.prefill.name, backend.url, device, datetime.now(UTC),
                             kv_bytes), params, held)

    async def _leg(self, pool: Pool, request: UpstreamRequest) -> tuple[UpstreamResponse,
                                                                         Backend]:
        """The first backend of `pool` whose answer is not a 5xx or 429.

        The leg holds one of the member pool's admission slots (this replica's share of its
        fleet-wide `max_concurrency`, as the pool's own requests do) and its backend's claim
        until its answer is read or closed; a pool whose queue is full too raises `Overloaded`.
        """
        await pool.admission.acquire(pool.name)
        try:
            return await self._backends(pool, request)
        except BaseException:
            pool.admission.release()
            raise

    async def _backends(self, pool: Pool, request: UpstreamRequest
                        ) -> tuple[UpstreamResponse, Backend]:
        last: BackendUnavailable | None = None
        for backend, breaker in pool.attempt_order(len(pool.backends)):
            pool.claim(backend)
            try:
                response = await backend.send(request)
                if response.status_code >= 500 or response.status_code == 429:
                    detail = (await response.read())[:300].decode(errors="replace")
                    raise BackendUnavailable(f"HTTP {response.status_code}: {detail}",
                                             status_code=response.status_code)
            except BackendUnavailable as exc:
                pool.unclaim(backend)
                breaker.record_failure()
                last = exc
                continue
            except BaseException:
                pool.unclaim(backend)
                raise
            breaker.record_success()
            return response, backend
        raise last or BackendUnavailable(f"pool {pool.name!r}: every backend is failing "
                                         "(circuit open)")

    def _answer(self, response: UpstreamResponse, pool: Pool, backend: Backend, decoding: str,
                phase: PrefillPhase | None = None, *, whole: bool = False) -> UpstreamResponse:
        device = response.device or self.devices.device_for(pool.name, backend.url)
        return _LegResponse(response, pool, backend, decoding, device, phase,
                            served_pool=pool.name if whole else None)

    @staticmethod
    def _model(pool: Pool, payload: ChatCompletionRequest | CompletionRequest) -> str:
        return pool.upstream_model(payload.model) or payload.model

    def _release(self, held: _Held | None) -> None:
        """Free a held cache in the background (also from a cancelled task)."""
        if held is None:
            return
        task = asyncio.ensure_future(self._delete(held))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _delete(self, held: _Held) -> None:
        try:
            await self._client.delete(held.release_url, headers=held.headers)
        except httpx.HTTPError as exc:  # it expires on its own
            log.info("releasing a held KV cache failed (%s); it expires", type(exc).__name__)

    async def aclose(self) -> None:
        """Finish pending releases, close the release client."""
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        await self._client.aclose()


class _LegResponse(UpstreamResponse):
    """The answering leg's response; its backend's claim and pool slot go back once read."""

    def __init__(self, inner: UpstreamResponse, pool: Pool, backend: Backend, decoding: str,
                 device: str, phase: PrefillPhase | None, served_pool: str | None) -> None:
        self._inner = inner
        self._pool = pool
        self._backend: Backend | None = backend
        self.status_code = inner.status_code
        self.content_type = inner.content_type
        self.decoding = decoding
        self.device = device
        self.prefill = phase
        self.served_pool = served_pool
        self.kv_bytes = phase.kv_bytes if phase is not None else None

    def _done(self) -> None:
        if self._backend is not None:
            self._pool.unclaim(self._backend)
            self._pool.admission.release()
            self._backend = None

    async def read(self) -> bytes:
        try:
            return await self._inner.read()
        finally:
            self._done()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner.iter_bytes():
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._done()
