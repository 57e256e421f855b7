"""Helpers of the self-registration tests: an accepting aggregator, a registrar the test times,
the README's three lines run as a program, and RegistrationService calls.

`ManualTimer` is a registrar's `wait`: each wait blocks until the test fires it, so a test
decides when an agent renews (no sleep, no real 10 s). `readme_agent()` runs the README's
three lines in a process of their own, which a test can `kill -9`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from metricsmesh.v1 import (
    aggregator_pb2,
    aggregator_pb2_grpc,
    fleet_pb2,
    registration_pb2,
    registration_pb2_grpc,
    snapshot_pb2,
)

from agent._registration import Registrar, SelfRegistration
from aggregator import AggregatorServer, AggregatorSettings, Registry
from aggregator._fleet.settings import DiscoverySettings
from mesh_common.clocks import Clocks
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.fleet_files import readme_blocks

LEASE = 30.0
REMOVE_AFTER = 300.0
WAIT_SECONDS = 10.0
"""How long a test waits for a registrar to reach its next wait (a real call in between)."""


def accepting(**changes: Any) -> DiscoverySettings:
    """`[discovery]` with accept_registrations, a 30 s lease, removal after 300 s."""
    table = {
        "accept_registrations": True,
        "lease_seconds": LEASE,
        "remove_after_seconds": REMOVE_AFTER,
        **changes,
    }
    return DiscoverySettings(**table)


def aggregator(
    *,
    clock: FakeClock | None = None,
    registry: Registry | None = None,
    discovery: DiscoverySettings | None = None,
    port: int = 0,
    **kwargs: Any,
) -> AggregatorServer:
    """An aggregator with `discovery` (default: `accepting()`), rounds every 0.3 s.

    With `clock` it reads time from it and runs rounds only on demand (`fresh_snapshot`).
    """
    settings = AggregatorSettings(
        port=port, interval_seconds=0.3, deadline_seconds=0.2, min_round_spacing_seconds=0.0
    )
    if clock is not None:
        kwargs.update(clocks=Clocks(monotonic=clock, wall=time.time), interval_rounds=False)
    return AggregatorServer(
        Registry() if registry is None else registry,
        settings,
        discovery=accepting() if discovery is None else discovery,
        **kwargs,
    )


class ManualTimer:
    """A registrar's `wait` that returns only when the test fires it; the delays asked kept."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._release = asyncio.Event()
        self._waiting = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """What the registrar awaits between two calls."""
        self.delays.append(seconds)
        self._release = asyncio.Event()
        self._waiting.set()
        await self._release.wait()

    async def next_wait(self) -> float:
        """Wait until the registrar waits (its call done); the delay it asked for."""
        await asyncio.wait_for(self._waiting.wait(), WAIT_SECONDS)
        self._waiting.clear()
        return self.delays[-1]

    async def fire(self) -> float:
        """End the pending wait; the delay of the next one, once the call between is done."""
        self._release.set()
        return await self.next_wait()


@contextlib.asynccontextmanager
async def registrar(
    aggregator_address: str,
    service_name: str,
    agent_port: int,
    **options: Any,
) -> AsyncIterator[tuple[Registrar, ManualTimer]]:
    """A started Registrar for an agent on 127.0.0.1:`agent_port`, timed by a ManualTimer.

    Yields once its first call (the registration) is done; stopped (deregistering) after.
    """
    timer = ManualTimer()
    running = Registrar(
        SelfRegistration(aggregator_address, **options),
        service_name,
        agent_host="127.0.0.1",
        agent_port=agent_port,
        wait=timer.wait,
    )
    running.start()
    try:
        await timer.next_wait()
        yield running, timer
    finally:
        await running.stop()


async def fresh_snapshot(server: AggregatorServer) -> snapshot_pb2.Snapshot:
    """A snapshot of a round of its own (the fake clock does not move)."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        request = aggregator_pb2.GetSnapshotRequest()
        request.max_age.FromNanoseconds(0)
        return (await stub.GetSnapshot(request, timeout=10)).snapshot


async def get_fleet(address: str) -> fleet_pb2.GetFleetResponse:
    """The aggregator's GetFleet answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        return await stub.GetFleet(fleet_pb2.GetFleetRequest(), timeout=10)


async def fleet_addresses(address: str, count: int) -> list[str]:
    """The live fleet's agent addresses once there are `count` of them."""

    async def probe() -> list[str] | None:
        found = [a for s in (await get_fleet(address)).services for a in s.agent_addresses]
        return found if len(found) == count else None

    return await eventually(probe, what=f"{count} registered agents")


async def fleet_becomes(server: AggregatorServer, *names: str) -> None:
    """Wait until the rounds' registry holds `names` (the fleet merges soon after a change)."""
    await eventually(lambda: server.registry.names == names, what=f"the fleet {names}")


async def register(
    address: str, metadata: tuple[tuple[str, str], ...] = (), **fields: Any
) -> registration_pb2.RegisterResponse:
    """One Register call with `fields` (a RegisterRequest's)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registration_pb2_grpc.RegistrationServiceStub(channel)
        request = registration_pb2.RegisterRequest(**fields)
        return await stub.Register(request, metadata=metadata, timeout=10)


@dataclasses.dataclass
class ReadmeAgent:
    """The README's three lines running in a process of their own."""

    process: asyncio.subprocess.Process
    port: int

    def kill(self) -> None:
        """kill -9: no deregistration, no goodbye."""
        self.process.send_signal(signal.SIGKILL)


@contextlib.asynccontextmanager
async def readme_agent(aggregator_address: str) -> AsyncIterator[ReadmeAgent]:
    """The README's self-registration block, pointed at `aggregator_address`, bound to
    loopback; it prints its port and serves until killed."""
    (block,) = (block for block in readme_blocks("python") if "register_with" in block)
    program = (
        block.replace("aggregator.internal:50100", aggregator_address).replace(
            '"0.0.0.0"', '"127.0.0.1"'
        )
        + "\nimport signal\nprint(agent.port, flush=True)\nsignal.pause()\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", program, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        yield ReadmeAgent(process, int(line))
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
