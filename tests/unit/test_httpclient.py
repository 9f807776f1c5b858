"""Job clients share one TLS context: a new client costs no CA-bundle load on the event loop."""

from __future__ import annotations

import asyncio

from proxy.httpclient import job_client, tls_context


def test_job_clients_share_one_tls_context_and_ignore_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # would capture every probe

    async def scenario() -> None:
        first, second = job_client(1.0), job_client(2.0)
        try:
            for client in (first, second):
                pool = client._transport._pool  # type: ignore[attr-defined]
                assert pool._ssl_context is tls_context()
                assert client._mounts == {}  # no proxy mount from the environment
            assert first.timeout.read == 1.0 and second.timeout.read == 2.0
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(scenario())
