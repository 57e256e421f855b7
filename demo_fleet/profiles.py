"""How busy each demo service is: its flows of events, their rates and their bursts.

A `Flow` is one kind of event the service produces, at a mean rate (Poisson arrivals) with
optional periodic bursts. How an event comes about depends on `via`:

- `http`: the service sends a real HTTP request to its own API; the agent's middleware counts
  it on the server side (kind `api_call`).
- `upstream`: the service fetches from the fake upstream over HTTP and counts each successful
  fetch (kind `data_fetch`; failures count as `data_fetch_error`).
- `work`: in-process work (a message consumed, a correlation computed), counted directly.

The built-in fifteen services have hand-written profiles; any other service gets one derived
from its type, with rates varied deterministically by its name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

Via = Literal["http", "upstream", "work"]


@dataclass(frozen=True, slots=True)
class Flow:
    """One stream of events: `rate` per second on average, x`burst_factor` during bursts."""

    kind: str
    rate: float
    via: Via
    burst_every: float = 0.0
    burst_for: float = 0.0
    burst_factor: float = 1.0

    def rate_at(self, elapsed: float) -> float:
        """The mean rate `elapsed` seconds after start (bursts included)."""
        if self.burst_every > 0 and elapsed % self.burst_every < self.burst_for:
            return self.rate * self.burst_factor
        return self.rate

    def scaled(self, factor: float) -> Flow:
        """The same flow with its rate multiplied by `factor`."""
        return Flow(
            self.kind,
            self.rate * factor,
            self.via,
            self.burst_every,
            self.burst_for,
            self.burst_factor,
        )


def _api(rate: float, every: float = 0.0, length: float = 0.0, factor: float = 1.0) -> Flow:
    return Flow("api_call", rate, "http", every, length, factor)


def _fetch(rate: float, every: float = 0.0, length: float = 0.0, factor: float = 1.0) -> Flow:
    return Flow("data_fetch", rate, "upstream", every, length, factor)


def _work(
    kind: str, rate: float, every: float = 0.0, length: float = 0.0, factor: float = 1.0
) -> Flow:
    return Flow(kind, rate, "work", every, length, factor)


BUILT_IN: dict[str, tuple[Flow, ...]] = {
    "websocket-ingestion": (_work("message", 30.0, 20.0, 3.0, 4.0), _api(2.0)),
    "enrichment-pipeline": (_work("message", 15.0, 30.0, 6.0, 2.0), _api(1.0)),
    "admin-api": (_api(1.0, 30.0, 5.0, 5.0),),
    "data-api": (_api(6.0, 15.0, 4.0, 3.0),),
    "sports-data": (_fetch(1.0, 40.0, 8.0, 4.0), _api(1.0)),
    "weather-api": (_fetch(0.5), _api(3.0)),
    "carbon-intensity-service": (_fetch(0.2), _api(0.5)),
    "electricity-pricing-service": (_fetch(0.33), _api(1.0, 20.0, 4.0, 3.0)),
    "air-quality-service": (_fetch(0.5), _api(0.8)),
    "calendar-service": (_fetch(0.1), _api(0.3)),
    "smart-meter-service": (_fetch(2.0), _work("message", 10.0, 10.0, 2.0, 3.0)),
    "log-aggregator": (_work("message", 40.0, 25.0, 5.0, 3.0), _api(0.5)),
    "energy-correlator": (_work("analysis", 1.0), _api(2.0)),
    "ai-automation-service": (_work("inference", 0.5, 30.0, 5.0, 6.0), _api(1.0)),
    "data-retention": (_work("cleanup", 0.1), _api(0.2)),
}

_BY_TYPE: dict[str, tuple[Flow, ...]] = {
    "core": (_work("message", 10.0, 20.0, 3.0, 3.0), _api(1.0)),
    "data": (_fetch(0.5), _api(1.0)),
    "analysis": (_work("analysis", 1.0), _api(1.0)),
    "ai": (_work("inference", 0.5), _api(1.0)),
}
_OTHER: tuple[Flow, ...] = (_api(1.0),)


def flows_for(name: str, service_type: str, *, has_data_source: bool) -> tuple[Flow, ...]:
    """The flows of service `name`: its built-in profile, or one derived from its type.

    Services without a data source never fetch from the upstream (the flow becomes `work`).
    """
    flows = BUILT_IN.get(name)
    if flows is None:
        # 0.5x .. 1.5x, the same for the same name on every run.
        factor = 0.5 + (zlib.crc32(name.encode()) % 1000) / 1000
        flows = tuple(flow.scaled(factor) for flow in _BY_TYPE.get(service_type, _OTHER))
    if not has_data_source:
        flows = tuple(
            Flow(f.kind, f.rate, "work", f.burst_every, f.burst_for, f.burst_factor)
            if f.via == "upstream"
            else f
            for f in flows
        )
    return flows


def kinds_of(flows: tuple[Flow, ...]) -> tuple[str, ...]:
    """Every event kind the flows can produce (fetch failures included), sorted."""
    kinds = {flow.kind for flow in flows}
    if any(flow.via == "upstream" for flow in flows):
        kinds.add("data_fetch_error")
    return tuple(sorted(kinds))
