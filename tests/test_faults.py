"""The fault test: real agent processes killed (-9), frozen (SIGSTOP) and thawed (SIGCONT), and
the aggregator restarted, under a live SSE client and a gRPC subscriber.

Asserted from what the subscriber saw, round by round: a fault shows within one round
after it (the round running at the fault may still have its answer), an agent that answers
again is active within two rounds, a dead or frozen agent is never counted, and a restart of
the aggregator is told to both clients as a gap, never skipped silently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import grpc
import httpx
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from aggregator import DEFAULT_REGISTRY, AggregatorServer, AggregatorSettings, Registry
from demo_fleet.steady_agent import SteadyAgent
from gateway import GatewaySettings
from tests.eventually import eventually
from tests.hardened_gateway import serve_hardened
from tests.ports import free_port
from tests.sse_client import events

INTERVAL = 0.5
DEADLINE = 0.3
ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE


@contextmanager
def agent_processes(count: int, ports: list[int]) -> Iterator[list[SteadyAgent]]:
    agents = [SteadyAgent(DEFAULT_REGISTRY[i].name, ports[i]) for i in range(count)]
    try:
        for agent in agents:
            agent.start()
        yield agents
    finally:
        for agent in agents:
            agent.kill()


@dataclasses.dataclass
class Seen:
    """What a client saw: snapshots (epoch, sequence, take time, statuses) and gaps."""

    snapshots: list[snapshot_pb2.Snapshot] = dataclasses.field(default_factory=list)
    gaps: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    """(epoch, sequence) of the first snapshot after each gap."""


async def subscribe(address: str, seen: Seen) -> None:
    """A gRPC subscriber that resumes from its last (epoch, sequence) after every break."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        while True:
            request = aggregator_pb2.StreamSnapshotsRequest()
            if seen.snapshots:
                last = seen.snapshots[-1]
                request.after_sequence, request.after_epoch = last.sequence, last.epoch
            try:
                async for message in stub.StreamSnapshots(request):
                    if message.gap:
                        seen.gaps.append((message.snapshot.epoch, message.snapshot.sequence))
                    seen.snapshots.append(message.snapshot)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)


async def read_sse(url: str, got: list[tuple[str, str]]) -> None:
    """Collect (event name, id or data) of the SSE stream, reconnecting with Last-Event-ID."""
    last_id: str | None = None
    async with httpx.AsyncClient(timeout=None) as http:
        while True:
            headers = {} if last_id is None else {"Last-Event-ID": last_id}
            try:
                async with http.stream("GET", url, headers=headers) as response:
                    async for event in events(response):
                        last_id = event.last_event_id or last_id
                        if event.name == "gap":
                            got.append((event.name, event.data))
                        elif event.name not in ("message", "comment"):
                            got.append((event.name, event.last_event_id or ""))
            except httpx.HTTPError:
                await asyncio.sleep(0.1)


def row(snapshot: snapshot_pb2.Snapshot, name: str) -> snapshot_pb2.ServiceRow:
    return next(r for r in snapshot.services if r.service_name == name)


def taken_after(seen: Seen, instant: float) -> list[snapshot_pb2.Snapshot]:
    return [s for s in seen.snapshots if s.take_time.ToNanoseconds() / 1e9 >= instant]


async def rounds_until(seen: Seen, instant: float, name: str, active: bool) -> int:
    """How many rounds taken after `instant` it took until `name` read active (or not)."""

    def reached() -> int | None:
        after = taken_after(seen, instant)
        for index, snapshot in enumerate(after):
            if (row(snapshot, name).status == ACTIVE) is active:
                return index + 1
        return None

    return await eventually(reached, timeout=15, what=f"{name} active={active}")


@asynccontextmanager
async def aggregator_on(registry: Registry, port: int) -> AsyncIterator[AggregatorServer]:
    settings = AggregatorSettings(port=port, interval_seconds=INTERVAL, deadline_seconds=DEADLINE)
    server = AggregatorServer(registry, settings, grace_seconds=0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


@pytest.mark.timeout(90)
async def test_kill_stop_cont_and_aggregator_restart_are_seen_round_by_round() -> None:
    ports = [free_port() for _ in range(4)]
    aggregator_port = free_port()
    with agent_processes(4, ports) as agents:
        registry = Registry(
            dataclasses.replace(DEFAULT_REGISTRY[i], host="127.0.0.1", agent_port=ports[i])
            for i in range(4)
        )
        seen, sse = Seen(), []
        address = f"127.0.0.1:{aggregator_port}"
        gateway = GatewaySettings(
            port=0, aggregator=address, services_configured=4, stale_after_seconds=5.0
        )
        async with serve_hardened(gateway) as gateway_port:
            tasks: list[asyncio.Task[None]] = []
            try:
                async with aggregator_on(registry, aggregator_port) as server:
                    tasks.append(asyncio.create_task(subscribe(address, seen)))
                    url = f"http://127.0.0.1:{gateway_port}/api/v1/real-time-metrics/stream"
                    tasks.append(asyncio.create_task(read_sse(url, sse)))

                    def all_active() -> bool:
                        return bool(seen.snapshots) and seen.snapshots[-1].active_count == 4

                    await eventually(all_active, timeout=20, what="every agent active")
                    frozen, dead = agents[0], agents[1]

                    # SIGSTOP: inactive within one round after the fault.
                    stopped_at = time.time()
                    frozen.signal(signal.SIGSTOP)
                    assert await rounds_until(seen, stopped_at, frozen.name, False) <= 2
                    # kill -9: the same.
                    killed_at = time.time()
                    dead.kill()
                    assert await rounds_until(seen, killed_at, dead.name, False) <= 2

                    def backing_off() -> bool:  # the backoff has grown: rounds skip both
                        last = seen.snapshots[-1]
                        return all(
                            "backing off" in row(last, agent.name).error_message
                            for agent in (frozen, dead)
                        )

                    await eventually(backing_off, timeout=20, what="both agents backing off")
                    # SIGCONT and a restart: active within two rounds of answering again.
                    resumed_at = time.time()
                    frozen.signal(signal.SIGCONT)
                    assert await rounds_until(seen, resumed_at, frozen.name, True) <= 3
                    dead.start()
                    restarted_at = time.time()
                    assert await rounds_until(seen, restarted_at, dead.name, True) <= 3
                    # No frozen or dead agent was ever counted.
                    for snapshot in taken_after(seen, stopped_at + DEADLINE):
                        if snapshot.take_time.ToNanoseconds() / 1e9 < resumed_at - DEADLINE:
                            assert row(snapshot, frozen.name).status != ACTIVE
                        active = [r for r in snapshot.services if r.status == ACTIVE]
                        assert snapshot.active_count == len(active)
                        total = sum(r.events_per_second for r in active)
                        assert snapshot.events_per_second == pytest.approx(total)
                    for snapshot in taken_after(seen, killed_at + DEADLINE):
                        if snapshot.take_time.ToNanoseconds() / 1e9 < restarted_at - 0.5:
                            assert row(snapshot, dead.name).status != ACTIVE
                    old_epoch = seen.snapshots[-1].epoch
                    sse_before = len(sse)
                # The aggregator restarts on the same port, both clients still attached.
                async with aggregator_on(registry, aggregator_port) as server:

                    def new_lifetime() -> bool:
                        return bool(seen.snapshots) and seen.snapshots[-1].epoch != old_epoch

                    await eventually(new_lifetime, timeout=20, what="the new lifetime")
                    assert seen.gaps and seen.gaps[-1][0] == server.loop.epoch

                    def sse_told() -> list[tuple[str, str]] | None:
                        later = sse[sse_before:]
                        fresh = [
                            e
                            for e in later
                            if e[0] == "snapshot" and e[1].startswith(f"{server.loop.epoch}-")
                        ]
                        return later if fresh else None

                    later = await eventually(sse_told, timeout=20, what="SSE in the new lifetime")
                    names = [name for name, _ in later]
                    first_new = next(
                        index
                        for index, (name, ident) in enumerate(later)
                        if name == "snapshot" and ident.startswith(f"{server.loop.epoch}-")
                    )
                    assert "gap" in names[:first_new], later
                    gap = json.loads(later[names.index("gap")][1])
                    assert gap["after"].startswith(f"{old_epoch}-")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
