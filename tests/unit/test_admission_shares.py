"""Fleet-wide concurrency shares, and admission's queue on real event loops."""

from __future__ import annotations

import asyncio

import pytest

from proxy.backends.base import Backend, UpstreamRequest, UpstreamResponse
from proxy.errors import Overloaded
from proxy.pools.admission import Admission, share
from proxy.pools.config import PoolConfig
from proxy.pools.registry import Pool


class SilentBackend(Backend):
    """A backend that is never called: shares only need its place in the pool."""

    kind = "openai"

    def __init__(self, url: str) -> None:
        self.url = url

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        raise AssertionError("no request is sent in these tests")


def test_shares_sum_to_the_total_for_any_replica_count() -> None:
    for total in range(41):
        for replicas in range(1, 8):
            shares = [share(total, replicas, index) for index in range(replicas)]
            assert sum(shares) == total, (total, replicas)
            assert max(shares) - min(shares) <= 1
            for offset in range(6):  # per backend, the extra slots rotate
                per_backend = [share(total, replicas, index, offset)
                               for index in range(replicas)]
                assert sum(per_backend) == total, (total, replicas, offset)


def test_the_extra_slots_of_different_backends_go_to_different_replicas() -> None:
    # 1 slot per backend, 3 backends, 3 replicas: each replica gets one backend.
    grid = [[share(1, 3, index, offset) for offset in range(3)] for index in range(3)]
    assert [sum(row) for row in grid] == [1, 1, 1]


def test_no_replicas_known_yet_means_all_of_it() -> None:
    assert share(9, 0, 0) == 9


def _pools(config: PoolConfig, replicas: int) -> list[Pool]:
    pools = []
    for index in range(replicas):
        pool = Pool(config, [SilentBackend(url) for url in config.base_urls])
        pool.take_share(replicas, index)
        pools.append(pool)
    return pools


@pytest.mark.parametrize("backends", [1, 2, 3, 5])
@pytest.mark.parametrize("per_backend", [1, 2, 4, 7])
def test_backend_shares_sum_to_each_backends_limit(backends: int, per_backend: int) -> None:
    config = PoolConfig(name="p", base_urls=[f"http://127.0.0.1:1/b{i}/v1" for i in
                                             range(backends)],
                        max_concurrency=1_000, max_concurrency_per_backend=per_backend)
    for replicas in range(1, 8):
        pools = _pools(config, replicas)
        limits = [p.backend_limits or [] for p in pools]
        for backend in range(backends):
            assert sum(row[backend] for row in limits) == per_backend, (replicas, backend)
        # The pool's own limit is the sum of this replica's backend shares here.
        assert sum(p.admission.limit for p in pools) == per_backend * backends


def test_pool_shares_without_per_backend_limits_sum_to_max_concurrency() -> None:
    config = PoolConfig(name="p", base_urls=["http://127.0.0.1:1/v1"], max_concurrency=10)
    for replicas in range(1, 8):
        pools = _pools(config, replicas)
        assert sum(p.admission.limit for p in pools) == 10
        assert all(p.backend_limits is None for p in pools)


def test_the_fleet_admits_as_many_as_its_limits_allow() -> None:
    """Fleet-wide, min(max_concurrency, per-backend limit x backends) requests may run.

    The pool's slots are water-filled over the replicas, capped by each one's backend shares,
    so no slot is lost where the two kinds of share land on different replicas (4 GPUs at 1
    request each, a pool limit of 4 and 7 replicas once admitted 1 request at a time).
    """
    lost = []
    for max_concurrency in range(1, 9):
        for per_backend in range(1, 4):
            for backends in range(1, 5):
                config = PoolConfig(
                    name="p", base_urls=[f"http://127.0.0.1:1/b{i}/v1" for i in range(backends)],
                    max_concurrency=max_concurrency, max_concurrency_per_backend=per_backend)
                for replicas in range(1, 8):
                    fleet = sum(p.admission.limit for p in _pools(config, replicas))
                    allowed = min(max_concurrency, per_backend * backends)
                    assert fleet <= allowed
                    if fleet != allowed:
                        lost.append((max_concurrency, per_backend, backends, replicas, fleet))
    assert lost == [], f"{len(lost)} cases, e.g. (max, per backend, backends, replicas, " \
                       f"admitted): {lost[:5]}"


async def _started(admission: Admission, order: list[int], index: int) -> None:
    await admission.acquire("p")
    order.append(index)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_zero_share_refuses_at_once() -> None:
    async def scenario() -> None:
        admission = Admission(max_concurrency=4, max_queue=10)
        admission.set_limit(0)  # more replicas than slots: this one has none
        with pytest.raises(Overloaded):
            await admission.acquire("p")
        assert admission.waiting == 0 and admission.in_flight == 0

    asyncio.run(scenario())


def test_a_larger_share_wakes_waiters_in_order() -> None:
    async def scenario() -> None:
        admission = Admission(max_concurrency=4, max_queue=10)
        admission.set_limit(1)
        await admission.acquire("p")  # the one slot is held
        order: list[int] = []
        tasks = [asyncio.create_task(_started(admission, order, i)) for i in range(5)]
        await _settle()
        assert order == [] and admission.waiting == 5 and admission.in_flight == 1
        admission.set_limit(3)
        await _settle()
        assert order == [0, 1] and admission.in_flight == 3 and admission.waiting == 3
        admission.release()
        await _settle()
        assert order == [0, 1, 2] and admission.in_flight == 3
        admission.set_limit(10)
        await _settle()
        assert order == [0, 1, 2, 3, 4] and admission.in_flight == 5 and admission.waiting == 0
        await asyncio.gather(*tasks)
        for _ in range(5):
            admission.release()
        assert admission.in_flight == 0 and admission.free

    asyncio.run(scenario())


def test_a_full_queue_refuses_at_once() -> None:
    async def scenario() -> None:
        admission = Admission(max_concurrency=1, max_queue=2)
        await admission.acquire("p")
        waiters = [asyncio.create_task(admission.acquire("p")) for _ in range(2)]
        await _settle()
        assert admission.waiting == 2
        with pytest.raises(Overloaded) as refused:
            await admission.acquire("p")
        assert refused.value.status_code == 429
        assert admission.waiting == 2 and admission.in_flight == 1
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        admission.release()
        assert admission.in_flight == 0 and admission.waiting == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaks_no_slot() -> None:
    async def scenario() -> None:
        admission = Admission(max_concurrency=1, max_queue=5)
        await admission.acquire("p")  # the one slot is held
        waiter = asyncio.create_task(admission.acquire("p"))
        await _settle()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert admission.waiting == 0 and admission.in_flight == 1
        admission.release()
        assert admission.in_flight == 0 and admission.free

    asyncio.run(scenario())


def test_a_waiter_cancelled_just_as_it_was_granted_gives_the_slot_on() -> None:
    async def scenario() -> None:
        admission = Admission(max_concurrency=1, max_queue=5)
        await admission.acquire("p")  # the one slot is held
        order: list[int] = []
        first = asyncio.create_task(_started(admission, order, 0))
        second = asyncio.create_task(_started(admission, order, 1))
        await _settle()
        admission.release()  # grants the first waiter's future ...
        first.cancel()  # ... which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await first
        await _settle()
        assert order == [1]  # the slot went on to the next waiter
        assert admission.in_flight == 1
        await second
        admission.release()
        assert admission.in_flight == 0 and admission.waiting == 0

    asyncio.run(scenario())


def test_a_release_between_a_waiters_cancel_and_its_wakeup_is_harmless() -> None:
    """Shutdown cancels every task at once: the slot holder's release can pass over a queued
    waiter that is cancelled but has not run yet (CI found a ValueError there)."""
    async def scenario() -> None:
        admission = Admission(max_concurrency=1, max_queue=5)
        await admission.acquire("p")  # the one slot is held
        queued = asyncio.create_task(admission.acquire("p"))
        await _settle()
        queued.cancel()  # its future is cancelled; the task has not run its handler yet
        admission.release()  # takes the cancelled waiter off the queue and passes over it
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert admission.waiting == 0 and admission.in_flight == 0 and admission.free

    asyncio.run(scenario())
