"""The gateway as `python -m gateway` runs it (guarded protocol, limits) for the hardening tests.

`serve_hardened(settings)` runs `gateway.__main__.uvicorn_config(settings)` on a free
127.0.0.1 port in this loop; `small_mesh()` adds a few real agents and an aggregator.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

from agent import AgentServer, EventTracker
from aggregator import DEFAULT_REGISTRY, AggregatorServer, AggregatorSettings, Registry
from gateway import GatewaySettings
from gateway.__main__ import uvicorn_config
from tests.eventually import eventually
from tests.ports import free_socket


@asynccontextmanager
async def serve_hardened(settings: GatewaySettings, **options: Any) -> AsyncIterator[int]:
    """The gateway with its production uvicorn configuration; yields the port."""
    sock = free_socket()
    config = uvicorn_config(settings, log_level="warning", timeout_graceful_shutdown=1, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), what="uvicorn to start")
        assert not task.done(), "uvicorn stopped at start-up"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@dataclasses.dataclass
class SmallMesh:
    """Three agents, an aggregator and the hardened gateway."""

    agents: list[AgentServer]
    aggregator: AggregatorServer
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def small_mesh(**gateway_settings: Any) -> AsyncIterator[SmallMesh]:
    """Three agents + aggregator (rounds of 0.2 s) + the gateway with `gateway_settings`."""
    agents = []
    entries = []
    try:
        for entry in DEFAULT_REGISTRY[:3]:
            agent = AgentServer(EventTracker(entry.name), grace_seconds=0)
            await agent.start()
            agents.append(agent)
            entries.append(dataclasses.replace(entry, host="127.0.0.1", agent_port=agent.port))
        settings = AggregatorSettings(port=0, interval_seconds=0.2, deadline_seconds=0.15)
        async with AggregatorServer(Registry(entries), settings) as aggregator:
            gateway = GatewaySettings(
                port=0,
                aggregator=aggregator.address,
                services_configured=3,
                stale_after_seconds=2.0,
                **gateway_settings,
            )
            async with serve_hardened(gateway) as port:
                yield SmallMesh(agents, aggregator, port)
    finally:
        for agent in agents:
            await agent.stop(0)


HARDENED_SETTINGS: dict[str, Any] = {
    "max_header_bytes": 8192,
    "header_timeout_seconds": 0.5,
    "max_sse_clients": 2,
    "max_ws_clients": 2,
    "ws_messages_per_second": 5.0,
    "cors_origins": ("https://dash.example",),
}
"""The `hardened` fixture's gateway settings: limits small enough for a test to reach."""


@asynccontextmanager
async def serving_small_mesh(**gateway_settings: Any) -> AsyncIterator[SmallMesh]:
    """`small_mesh` once its gateway answers the REST endpoint with a snapshot (200)."""
    async with small_mesh(**gateway_settings) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:

            async def serving() -> bool:
                return (await http.get("/api/v1/real-time-metrics")).status_code == 200

            await eventually(serving, what="a snapshot from the gateway")
        yield running
