"""How busy each demo service is: its flows of events, their rates and their bursts.

A `Flow` is one kind of event the service produces, at a mean rate (Poisson arrivals) with
optional periodic bursts. How an event comes about depends on `via`:

- `http`: the service sends a real HTTP request to its own API; the agent's middleware counts
  it on the server side (kind `api_call`).
- `upstream`: the service fetches from the fake upstream over HTTP and times each fetch
  (kind `data_fetch`; a failed fetch counts as a failed event).
- `work`: in-process work (a message consumed, a correlation computed), observed directly
  with a duration drawn from the flow's `Timing`.

Every flow has a `Timing`: how long its events take (log-normal around a median), how often
they fail, and optional slow spells. One service fails 2-5 % of its work
(`enrichment-pipeline`), one has a slow p99 now and then (`ai-automation-service`).

The built-in fifteen services have hand-written profiles; any other service gets one derived
from its type, with rates varied deterministically by its name.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, replace
from typing import Literal

Via = Literal["http", "upstream", "work"]


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a flow's events take and how often they fail."""

    median_seconds: float = 0.005
    sigma: float = 0.5
    """Spread of the log-normal durations (0 = always the median)."""
    failure_ratio: float = 0.002
    slow_every: float = 0.0
    """Seconds between the starts of two slow spells (0 = none)."""
    slow_for: float = 0.0
    slow_share: float = 0.0
    """During a spell, this share of events takes `slow_seconds`."""
    slow_seconds: float = 0.0
    spell_failure_ratio: float | None = None
    """During a spell, events fail this often instead (None: as often as outside)."""

    def sample(self, rng: random.Random, elapsed: float) -> tuple[float, bool]:
        """One event's (duration in seconds, failed) `elapsed` seconds after start."""
        spell = self.slow_every > 0 and elapsed % self.slow_every < self.slow_for
        if spell and rng.random() < self.slow_share:
            seconds = self.slow_seconds * rng.uniform(0.8, 1.2)
        else:
            seconds = self.median_seconds * rng.lognormvariate(0.0, self.sigma)
        failure_ratio = self.failure_ratio
        if spell and self.spell_failure_ratio is not None:
            failure_ratio = self.spell_failure_ratio
        return seconds, rng.random() < failure_ratio


@dataclass(frozen=True, slots=True)
class Flow:
    """One stream of events: `rate` per second on average, x`burst_factor` during bursts."""

    kind: str
    rate: float
    via: Via
    burst_every: float = 0.0
    burst_for: float = 0.0
    burst_factor: float = 1.0
    timing: Timing = Timing()

    def rate_at(self, elapsed: float) -> float:
        """The mean rate `elapsed` seconds after start (bursts included)."""
        if self.burst_every > 0 and elapsed % self.burst_every < self.burst_for:
            return self.rate * self.burst_factor
        return self.rate

    def scaled(self, factor: float) -> Flow:
        """The same flow with its rate multiplied by `factor`."""
        return replace(self, rate=self.rate * factor)

    def timed(self, timing: Timing) -> Flow:
        """The same flow with another timing."""
        return replace(self, timing=timing)


def _api(rate: float, every: float = 0.0, length: float = 0.0, factor: float = 1.0) -> Flow:
    return Flow("api_call", rate, "http", every, length, factor)


def _fetch(rate: float, every: float = 0.0, length: float = 0.0, factor: float = 1.0) -> Flow:
    return Flow("data_fetch", rate, "upstream", every, length, factor)


def _work(
    kind: str, rate: float, every: float = 0.0, length: float = 0.0, factor: float = 1.0
) -> Flow:
    return Flow(kind, rate, "work", every, length, factor)


FAST = Timing(0.0008, 0.4, 0.001)
"""Sub-millisecond in-process work."""
FLAKY = Timing(0.012, 0.6, 0.035, slow_every=150.0, slow_for=70.0, spell_failure_ratio=0.10)
"""The service that fails 2-5 % of its work, and 10 % for 70 s out of every 150 (its error
rate then passes 5 % long enough for the demo's HighErrorRate rule to fire, and resolves
below 3 % afterwards)."""
SPIKY = Timing(0.25, 0.35, 0.004, slow_every=90.0, slow_for=30.0, slow_share=0.05, slow_seconds=3.0)
"""Slow inferences now and then: p99 above 2 s for 30 s out of every 90."""

BUILT_IN: dict[str, tuple[Flow, ...]] = {
    "websocket-ingestion": (_work("message", 30.0, 20.0, 3.0, 4.0).timed(FAST), _api(2.0)),
    "enrichment-pipeline": (_work("message", 15.0, 30.0, 6.0, 2.0).timed(FLAKY), _api(1.0)),
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
    "energy-correlator": (_work("analysis", 1.0).timed(Timing(0.08, 0.5)), _api(2.0)),
    "ai-automation-service": (_work("inference", 0.5, 30.0, 5.0, 6.0).timed(SPIKY), _api(1.0)),
    "data-retention": (_work("cleanup", 0.1).timed(Timing(0.4, 0.3)), _api(0.2)),
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
        flows = tuple(replace(f, via="work") if f.via == "upstream" else f for f in flows)
    return flows


def kinds_of(flows: tuple[Flow, ...]) -> tuple[str, ...]:
    """Every event kind the flows can produce, sorted."""
    return tuple(sorted({flow.kind for flow in flows}))


def api_timing(flows: tuple[Flow, ...]) -> Timing:
    """How the service's own API answers (the timing of its `http` flow, or the default)."""
    return next((flow.timing for flow in flows if flow.via == "http"), Timing())
