"""Drives a demo service's flows: Poisson arrivals at each flow's rate, bursts included.

`Workload.run()` starts one task per flow and runs until cancelled. What one event *is*
depends on the flow (see `profiles`): a real request to the service's own HTTP API (timed by
the middleware), a real fetch from the fake upstream (timed here), or in-process work observed
on the tracker with a duration and an outcome drawn from the flow's timing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable

import httpx

from agent import EventTracker
from demo_fleet.profiles import Flow

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1
"""Above 2 events per tick, `work` flows record a batch per tick instead of one per wake-up."""

MAX_SLEEP_SECONDS = 2.0
"""Never sleep longer than this between two arrivals, so a burst starts on time."""


class Workload:
    """The in-process load of one demo service."""

    def __init__(
        self,
        tracker: EventTracker,
        flows: tuple[Flow, ...],
        *,
        api_client: httpx.AsyncClient,
        upstream_client: httpx.AsyncClient | None,
        data_source: str,
        scale: float = 1.0,
        seed: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Flows scaled by `scale`, their arrivals and timings drawn from `seed`.

        `seed` defaults to the service name; each instance of a service passes its own, so
        that instances do not move in lockstep.
        """
        self._tracker = tracker
        self._seed = seed or tracker.service_name
        self._flows = tuple(flow.scaled(scale) for flow in flows)
        self._api = api_client
        self._upstream = upstream_client
        self._data_source = data_source
        self._clock = clock
        self._start = clock()
        self._requests = 0
        self.last_payload: dict[str, object] = {}
        self.fetch_failures = 0

    async def run(self) -> None:
        """Run every flow until cancelled."""
        async with asyncio.TaskGroup() as group:
            for flow in self._flows:
                group.create_task(self._run_flow(flow), name=f"flow-{flow.kind}")

    async def _run_flow(self, flow: Flow) -> None:
        rng = random.Random(f"{self._seed}/{flow.kind}/{flow.via}")
        while True:
            rate = flow.rate_at(self._clock() - self._start)
            if rate <= 0:
                await asyncio.sleep(MAX_SLEEP_SECONDS)
                continue
            if flow.via == "work" and rate * TICK_SECONDS > 2:
                await asyncio.sleep(TICK_SECONDS)
                mean = rate * TICK_SECONDS
                count = max(0, round(rng.gauss(mean, math.sqrt(mean))))
                for _ in range(count):
                    self._work(flow, rng)
                continue
            await asyncio.sleep(min(rng.expovariate(rate), MAX_SLEEP_SECONDS))
            if flow.via == "work":
                self._work(flow, rng)
            elif flow.via == "http":
                await self._call_own_api(rng)
            else:
                await self._fetch_upstream(flow.kind)

    def _work(self, flow: Flow, rng: random.Random) -> None:
        """One piece of in-process work, observed with its simulated duration and outcome."""
        seconds, failed = flow.timing.sample(rng, self._clock() - self._start)
        self._tracker.observe(flow.kind, seconds, error=failed)

    async def _call_own_api(self, rng: random.Random) -> None:
        """One real request to the service's own API (the middleware counts it)."""
        self._requests += 1
        path = rng.choice(("/api/items/" + str(self._requests % 100), "/api/status", "/"))
        try:
            await self._api.get(path)
        except httpx.HTTPError as error:
            log.warning("request to own API %s failed: %s", path, error)

    async def _fetch_upstream(self, kind: str) -> None:
        """One real fetch from the fake upstream, timed; a failed one is a failed event."""
        started = self._tracker.clock()
        failure = ""
        try:
            response = (
                await self._upstream.get(f"/v1/{self._data_source}") if self._upstream else None
            )
        except httpx.HTTPError as error:
            failure = f"{type(error).__name__}: {error}"
        else:
            if response is not None and response.status_code != 200:
                failure = f"HTTP {response.status_code}"
            elif response is not None:
                self.last_payload = response.json()
        self._tracker.observe(kind, self._tracker.clock() - started, error=bool(failure))
        if failure:
            self._fetch_failed(failure)

    def _fetch_failed(self, reason: str) -> None:
        self.fetch_failures += 1
        if self.fetch_failures == 1 or self.fetch_failures % 50 == 0:
            log.warning("upstream fetch failed (%d so far): %s", self.fetch_failures, reason)
