"""Test helpers for the history store: known events, their exact figures, rounds, wire rows.

`Workload` feeds known events to real `EventTracker`s and remembers, for each, the round that
reported it (the first round after it): the store's figures are compared with the exact
figures of the same events grouped by that round's time. `wire_snapshot` builds a round's wire
snapshot from trackers as the aggregator's conversion does (for the recorder's own tests,
without gRPC); `history_server` and `run_round` drive a real aggregator.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from agent import AgentServer, EventTracker
from agent._convert import reading_to_response
from aggregator import AggregatorServer, AggregatorSettings, Clocks, Registry, ServiceEntry
from aggregator._convert import AGENT_FIELDS, copy_field
from aggregator._history import HistorySettings, HistoryWriter, SeriesKey, Tier
from mesh_common.latency import RELATIVE_ERROR, index_of, upper_bound
from mesh_common.wire_time import set_seconds
from tests.clocks import FakeClock
from tests.history_backends import HistoryBackend

ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
INACTIVE = snapshot_pb2.SERVICE_STATUS_INACTIVE
EPOCH = 1_699_920_000.0
"""A UTC midnight (epoch seconds): rounds from here align with every tier and step."""
KINDS = ("api_call", "data_fetch")


@dataclass(frozen=True, slots=True)
class Event:
    """One synthetic event: its kind, its duration (None: untimed), whether it failed."""

    service: str
    kind: str
    seconds: float | None
    error: bool


@dataclass
class Workload:
    """Feeds events to trackers; each event is attributed to the round that reports it."""

    trackers: dict[str, EventTracker]
    pending: list[Event] = field(default_factory=list)
    reported: list[tuple[int, Event]] = field(default_factory=list)
    """(round time in ms, event) for every event a round reported."""

    def feed(self, service: str, kind: str, seconds: float | None, error: bool = False) -> None:
        tracker = self.trackers[service]
        if seconds is None:
            if error:
                tracker.record_error(kind)
            else:
                tracker.record(kind)
        else:
            tracker.observe(kind, seconds, error=error)
        self.pending.append(Event(service, kind, seconds, error))

    def reported_at(self, round_ms: int) -> None:
        """The events fed since the last round were reported by the round at `round_ms`."""
        self.reported += [(round_ms, event) for event in self.pending]
        self.pending = []

    def lost(self, service: str) -> None:
        """Forget `service`'s unreported events (its tracker is gone)."""
        self.pending = [event for event in self.pending if event.service != service]


@dataclass
class ExactWindow:
    events: int = 0
    errors: int = 0
    durations: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.durations)
        return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def exact_windows(
    reported: Iterable[tuple[int, Event]],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    keep: Any = lambda event: True,
) -> dict[int, ExactWindow]:
    """Per point time `t`: the events reported by rounds whose time falls in `(t - step, t]`."""
    windows: dict[int, ExactWindow] = {}
    for round_ms, event in reported:
        if not keep(event):
            continue
        index = -((start_ms - round_ms) // step_ms)
        if not 0 <= index <= (end_ms - start_ms) // step_ms:
            continue
        window = windows.setdefault(start_ms + index * step_ms, ExactWindow())
        window.events += 1
        window.errors += event.error
        if event.seconds is not None:
            window.durations.append(event.seconds)
    return windows


def within_buckets(stored_ms: float, exact_seconds: float) -> bool:
    """A quantile read from the buckets is within RELATIVE_ERROR of the exact one."""
    exact_ms = exact_seconds * 1000.0
    return abs(stored_ms - exact_ms) <= RELATIVE_ERROR * exact_ms * (1 + 1e-9)


def max_within_bucket(stored_ms: float, exact_seconds: float) -> bool:
    """A stored maximum is at least the true one and at most its bucket's upper bound."""
    bound = upper_bound(index_of(exact_seconds)) * 1000.0
    return exact_seconds * 1000.0 - 1e-6 <= stored_ms <= bound + 1e-6


def fake_clocks(start: float = EPOCH) -> tuple[FakeClock, FakeClock, Clocks]:
    """A monotonic and a wall clock that only move when told to, and the Clocks of both."""
    monotonic = FakeClock(1000.0)
    wall = FakeClock(start)
    return monotonic, wall, Clocks(monotonic=monotonic, wall=wall)


def tick(monotonic: FakeClock, wall: FakeClock, seconds: float) -> None:
    monotonic.tick(seconds)
    wall.tick(seconds)


def wire_snapshot(
    time_s: float,
    trackers: Sequence[EventTracker],
    *,
    answered: Sequence[bool] | None = None,
    types: Sequence[str] | None = None,
) -> snapshot_pb2.Snapshot:
    """A round's wire snapshot: one active row per tracker (or inactive, stale, when not
    `answered`), as the aggregator builds it."""
    message = snapshot_pb2.Snapshot()
    set_seconds(message.take_time, time_s)
    for index, tracker in enumerate(trackers):
        fresh = answered is None or answered[index]
        row = message.services.add(
            service_name=tracker.service_name,
            service_type=types[index] if types else "core",
            status=ACTIVE if fresh else INACTIVE,
        )
        set_seconds(row.call_latency, 0.002)
        if fresh:
            answer = reading_to_response(tracker.read())
            for name in AGENT_FIELDS:
                copy_field(answer, row, name)
            set_seconds(row.last_seen_time, time_s)
            set_seconds(row.last_seen_age, 0.0)
    return message


def aggregator_settings() -> AggregatorSettings:
    """Rounds on demand only, as fast as the test asks.

    The deadline is long: an agent that answers late on a loaded machine would have its
    events counted by the next round, and a test that knows what each round holds would fail.
    """
    return AggregatorSettings(
        port=0, interval_seconds=10.0, deadline_seconds=5.0, min_round_spacing_seconds=0.0
    )


@contextlib.asynccontextmanager
async def history_server(
    registry: Registry, where: Path | HistoryBackend, clocks: Clocks, **history: Any
) -> AsyncIterator[AggregatorServer]:
    """A real aggregator (rounds on demand) writing its history to `where` (a SQLite file, or
    a backend's database)."""
    settings = (
        where.history_settings(**history)
        if isinstance(where, HistoryBackend)
        else HistorySettings(path=str(where), **history)
    )
    server = AggregatorServer(
        registry, aggregator_settings(), clocks=clocks, interval_rounds=False, history=settings
    )
    async with server:
        yield server


def writer_of(server: AggregatorServer) -> HistoryWriter:
    assert server.history is not None
    return server.history


async def run_round(server: AggregatorServer) -> snapshot_pb2.Snapshot:
    """One round of its own (GetSnapshot max_age 0), then wait until the history has it."""
    request = aggregator_pb2.GetSnapshotRequest()
    request.max_age.FromNanoseconds(0)
    async with grpc.aio.insecure_channel(server.address) as channel:
        response = await aggregator_pb2_grpc.AggregatorServiceStub(channel).GetSnapshot(request)
    await writer_of(server).flush()
    return response.snapshot


@contextlib.asynccontextmanager
async def agents(trackers: Sequence[EventTracker]) -> AsyncIterator[list[AgentServer]]:
    """A started AgentServer per tracker."""
    servers = [AgentServer(tracker, grace_seconds=0) for tracker in trackers]
    try:
        for server in servers:
            await server.start()
        yield servers
    finally:
        for server in servers:
            await server.stop(0)


def registry_of(servers: Sequence[AgentServer], types: Sequence[str] | None = None) -> Registry:
    return Registry(
        ServiceEntry(
            server.tracker.service_name,
            "127.0.0.1",
            9000 + index,
            server.port,
            types[index] if types else "core",
        )
        for index, server in enumerate(servers)
    )


def tracker(name: str, monotonic: FakeClock, wall: FakeClock) -> EventTracker:
    return EventTracker(name, clock=monotonic, wall_clock=wall, cpu_clock=time.process_time)


def stored_events(writer: HistoryWriter, key: SeriesKey, tier: Tier) -> int:
    """Every event the history holds for `key` in `tier`."""
    samples = writer.reader.read([key], tier, -(2**62), 2**62).get(key, [])
    return sum(getattr(sample, "events", 0) for sample in samples)
