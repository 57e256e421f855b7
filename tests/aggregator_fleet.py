"""Test helpers for the aggregator: a fleet of real agents, some of them broken on purpose.

Every agent is a real gRPC server on an ephemeral port: `AgentServer` for the healthy ones,
and small real servicers on `GrpcHost` for the agent that hangs past every deadline, the one
that answers with INTERNAL and the one that answers with bytes that are no message at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from metricsmesh.v1 import event_rate_pb2, event_rate_pb2_grpc

from agent import AgentServer, EventTracker
from agent._server import EVENT_RATE_SERVICE
from aggregator import DEFAULT_REGISTRY, Registry, ServiceEntry
from mesh_common.grpc_host import GrpcHost
from tests.ports import free_port

STOPPED, HUNG, NOT_SERVING, FAILING = 3, 5, 7, 9
"""Registry indexes of the broken agents in `fleet()`."""


class HangingServicer(event_rate_pb2_grpc.EventRateServiceServicer):
    """GetEventRate never answers: it waits for an event nobody sets."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def GetEventRate(self, request: Any, context: Any) -> Any:
        self.calls += 1
        await self.release.wait()
        return event_rate_pb2.GetEventRateResponse()


class AnswerServicer(event_rate_pb2_grpc.EventRateServiceServicer):
    """GetEventRate answers the same response every time (e.g. one a real agent never sends)."""

    def __init__(self, response: event_rate_pb2.GetEventRateResponse) -> None:
        self.response = response

    async def GetEventRate(self, request: Any, context: Any) -> Any:
        return self.response


class FailingServicer(event_rate_pb2_grpc.EventRateServiceServicer):
    """GetEventRate aborts with INTERNAL and a recognisable message."""

    async def GetEventRate(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.INTERNAL, "tracker exploded")


def garbage_handler(server: grpc.aio.Server) -> None:
    """EventRateService whose GetEventRate answers bytes that do not parse as its response."""

    async def get_event_rate(request: bytes, context: Any) -> bytes:
        return b"\xff\xff\xff"

    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                EVENT_RATE_SERVICE,
                {"GetEventRate": grpc.unary_unary_rpc_method_handler(get_event_rate)},
            ),
        )
    )


async def garbage_host(name: str) -> GrpcHost:
    """A started GrpcHost whose GetEventRate answers garbage, health SERVING for `name`."""
    host = GrpcHost(
        garbage_handler,
        service_names=(EVENT_RATE_SERVICE,),
        health_names=(name,),
        grace_seconds=0,
    )
    await host.start()
    return host


async def start_agent(name: str, events: int) -> AgentServer:
    """A started, healthy agent for service `name` that has recorded `events` events."""
    tracker = EventTracker(name)
    tracker.record(n=events)
    agent = AgentServer(tracker, grace_seconds=0)
    await agent.start()
    return agent


def entry_at(entry: ServiceEntry, agent_port: int) -> ServiceEntry:
    """`entry` with its agent on 127.0.0.1:`agent_port`."""
    return ServiceEntry(
        entry.name, "127.0.0.1", entry.port, agent_port, entry.type, entry.data_source
    )


async def servicer_host(servicer: Any, name: str) -> GrpcHost:
    """A started GrpcHost serving `servicer` as EventRateService, health SERVING for `name`."""
    host = GrpcHost(
        lambda server: event_rate_pb2_grpc.add_EventRateServiceServicer_to_server(servicer, server),
        service_names=(EVENT_RATE_SERVICE,),
        health_names=(name,),
        grace_seconds=0,
    )
    await host.start()
    return host


@dataclass
class Fleet:
    """The registry pointing at the fleet, and handles on its agents."""

    registry: Registry
    trackers: dict[str, EventTracker] = field(default_factory=dict)
    agents: dict[str, AgentServer] = field(default_factory=dict)
    hanging: HangingServicer = field(default_factory=HangingServicer)
    extra: list[AgentServer | GrpcHost] = field(default_factory=list)
    """Servers started by the test through `add_agent` / `add_garbage`, stopped with the fleet."""

    def name(self, index: int) -> str:
        return self.registry[index].name

    async def add_agent(self, name: str, events: int) -> AgentServer:
        """Another healthy agent for `name` (stopped with the fleet)."""
        agent = await start_agent(name, events)
        self.extra.append(agent)
        return agent

    async def add_servicer(self, name: str, servicer: Any) -> GrpcHost:
        """Another agent for `name` served by `servicer` (stopped with the fleet)."""
        host = await servicer_host(servicer, name)
        self.extra.append(host)
        return host

    async def add_garbage(self, name: str) -> GrpcHost:
        """Another agent for `name` that answers garbage (stopped with the fleet)."""
        host = await garbage_host(name)
        self.extra.append(host)
        return host


@contextlib.asynccontextmanager
async def fleet(
    entries: Sequence[ServiceEntry] = DEFAULT_REGISTRY, *, broken: bool = True
) -> AsyncIterator[Fleet]:
    """Real agents for `entries`; with `broken`, indexes STOPPED/HUNG/NOT_SERVING/FAILING are
    stopped, hanging, NOT_SERVING and failing. Healthy agent i records i + 1 events."""
    hosts: list[GrpcHost] = []
    agents: list[AgentServer] = []
    ports: list[int] = []
    result = Fleet(Registry(()))
    try:
        for index, entry in enumerate(entries):
            if broken and index == STOPPED:
                ports.append(free_port())
            elif broken and index == HUNG:
                host = await servicer_host(result.hanging, entry.name)
                hosts.append(host)
                ports.append(host.port)
            elif broken and index == FAILING:
                host = await servicer_host(FailingServicer(), entry.name)
                hosts.append(host)
                ports.append(host.port)
            else:
                agent = await start_agent(entry.name, index + 1)
                agents.append(agent)
                result.trackers[entry.name] = agent.tracker
                result.agents[entry.name] = agent
                ports.append(agent.port)
                if broken and index == NOT_SERVING:
                    await agent.set_serving(False)
        result.registry = Registry(
            entry_at(entry, port) for entry, port in zip(entries, ports, strict=True)
        )
        yield result
    finally:
        result.hanging.release.set()
        await asyncio.gather(
            *(agent.stop(0) for agent in agents),
            *(host.stop(0) for host in hosts),
            *(server.stop(0) for server in result.extra),
        )
