"""A fleet whose history is queried: real agents, a real aggregator keeping history under a fake
clock, and (when asked) the real gateway on uvicorn, all on ephemeral ports.

`history_fleet(tmp_path, start=...)` starts two agents (`weather-api`, type data, and
`sports-data`, type analysis) and an aggregator whose rounds run only when `HistoryFleet.rounds`
drives them, the fake clocks moving one second per round. Every round each agent counts a known
load (`LOAD`): `api_call` events of 10 ms and 30 ms, one failing, and an untimed `data_fetch`,
so every figure over a whole number of rounds is known exactly (`expected_*`). The fake wall
clock starts at `start` (a UTC minute: `EPOCH` of tests.history_mesh by default; pass the real
time, rounded, for a client that reads its own clock).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import EventTracker
from aggregator import AggregatorServer
from gateway import GatewaySettings
from tests.clocks import FakeClock
from tests.gateway_mesh import serve_gateway
from tests.history_mesh import (
    EPOCH,
    agents,
    fake_clocks,
    history_server,
    registry_of,
    run_round,
    tick,
    tracker,
)

SERVICES = {"weather-api": "data", "sports-data": "analysis"}
"""The fleet's services and their registry types."""
LOAD = {"weather-api": 1, "sports-data": 3}
"""Per round, each service counts `n` times: api_call 10 ms, api_call 30 ms (failed), and one
untimed data_fetch: 3n events, n errors, 2n timed."""


def expected_rate(service: str | None = None) -> float:
    """Events per second of one service (None: the fleet) at one round per second."""
    loads = [LOAD[service]] if service else list(LOAD.values())
    return float(sum(3 * load for load in loads))


def expected_error_rate(service: str | None = None) -> float:
    """Failed / all events of one service (None: the fleet)."""
    return 1 / 3


def minute_aligned(seconds: float) -> float:
    """The UTC minute at or before `seconds`."""
    return math.floor(seconds / 60) * 60.0


@dataclass
class HistoryFleet:
    """The running parts, the clocks and the gateway's URL (empty without a gateway)."""

    server: AggregatorServer
    trackers: dict[str, EventTracker]
    monotonic: FakeClock
    wall: FakeClock
    start: float
    gateway_url: str = ""

    @property
    def address(self) -> str:
        """The aggregator's HOST:PORT."""
        return self.server.address

    def now(self) -> float:
        """The fake wall clock."""
        return self.wall()

    async def rounds(self, count: int, seconds: float = 1.0, *, idle: bool = False) -> None:
        """`count` rounds, `seconds` apart, each after one round's load (`LOAD`; none if idle)."""
        for _ in range(count):
            tick(self.monotonic, self.wall, seconds)
            for name, load in LOAD.items():
                if idle:
                    break
                counter = self.trackers[name]
                for _ in range(load):
                    counter.observe("api_call", 0.010)
                    counter.observe("api_call", 0.030, error=True)
                    counter.record("data_fetch")
            await run_round(self.server)


@contextlib.asynccontextmanager
async def history_fleet(
    tmp_path: Path, *, start: float = EPOCH, gateway: bool = False, **history: Any
) -> AsyncIterator[HistoryFleet]:
    """The fleet (module doc); `history` are `[history]` settings, e.g. max_series=2."""
    monotonic, wall, clocks = fake_clocks(start)
    trackers = {name: tracker(name, monotonic, wall) for name in SERVICES}
    types = list(SERVICES.values())
    async with (
        agents(list(trackers.values())) as servers,
        history_server(
            registry_of(servers, types), tmp_path / "history.sqlite3", clocks, **history
        ) as server,
    ):
        fleet = HistoryFleet(server, trackers, monotonic, wall, start)
        if not gateway:
            yield fleet
            return
        settings = GatewaySettings(
            aggregator=server.address, reconnect_initial_seconds=0.05, reconnect_max_seconds=0.5
        )
        async with serve_gateway(settings) as (_, port):
            fleet.gateway_url = f"http://127.0.0.1:{port}"
            yield fleet
