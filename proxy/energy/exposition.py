"""Prometheus exposition: an exporter's `/metrics` text, fetched over HTTP and parsed into series.

The DCGM and Kepler meters read endpoints that GPU fleets already scrape. The text is parsed by
prometheus_client's parser, which appends `_total` to counter samples when the exporter declares
`# TYPE ... counter` and leaves the name alone when it does not; names are therefore compared
without that suffix, so `kepler_container_joules_total` and `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`
are found either way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

from proxy.energy.base import MeterUnavailable
from proxy.httpclient import job_client

# Ask for the classic text format: an exporter that also speaks OpenMetrics or protobuf would
# otherwise be free to choose, and only the text format is parsed here.
_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"


@dataclasses.dataclass(frozen=True, slots=True)
class Series:
    """One sample of a scrape: its labels and value."""

    labels: Mapping[str, str]
    value: float


def _key(name: str) -> str:
    return name.removesuffix("_total")


def selector_text(labels: Mapping[str, str]) -> str:
    """A label selector as PromQL writes it (`{pod="a",namespace="b"}`), for reasons."""
    if not labels:
        return "{} (every series)"
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


class Exposition:
    """One parsed scrape: series by metric name (compared without `_total`)."""

    def __init__(self, series_by_name: Mapping[str, list[Series]]) -> None:
        self._series = series_by_name

    def has(self, name: str) -> bool:
        """Whether the scrape carries this metric at all."""
        return _key(name) in self._series

    def series(self, name: str, labels: Mapping[str, str]) -> list[Series]:
        """The metric's series whose labels include every pair of `labels` (exact strings)."""
        return [s for s in self._series.get(_key(name), [])
                if all(s.labels.get(k) == v for k, v in labels.items())]


def parse_exposition(text: str) -> Exposition:
    """Parse Prometheus text exposition; raises ValueError on malformed text."""
    series_by_name: dict[str, list[Series]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = float(sample.value)
            if not math.isfinite(value):  # a NaN series would poison the sum it joins
                continue
            series_by_name.setdefault(_key(sample.name), []).append(
                Series(dict(sample.labels), value))
    return Exposition(series_by_name)


class ExpositionClient:
    """GETs one exporter URL and parses the answer; every failure becomes MeterUnavailable.

    Reasons leave the URL out: the meter that owns the client names itself (and so the URL).
    """

    def __init__(self, url: str, timeout_s: float = 2.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        # trust_env=False: an HTTP(S)_PROXY meant for the internet must not capture a scrape of
        # a node-local exporter.
        self._client = job_client(timeout_s, transport=transport, headers={"accept": _ACCEPT})

    async def scrape(self) -> Exposition:
        """One GET, parsed."""
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise MeterUnavailable(f"answered HTTP {exc.response.status_code}") from exc
        except httpx.HTTPError as exc:
            raise MeterUnavailable(f"{type(exc).__name__}: {exc}") from exc
        try:
            return parse_exposition(response.text)
        except ValueError as exc:
            raise MeterUnavailable(f"not Prometheus text exposition ({exc})") from exc

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
