"""A real mesh for the gateway tests: 15 agents, an aggregator and the gateway on uvicorn.

Everything listens on 127.0.0.1 port 0 in the test's event loop; clients are real (httpx,
websockets, Chromium, Prometheus). `Mesh.stop_aggregator()` / `start_aggregator()` take the
aggregator away and bring it back on the same port, as an operator restarting it would.
`MeshOptions` reads what a `@pytest.mark.mesh(...)` asks of the `mesh` fixture (conftest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import uvicorn

from agent import AgentServer, EventTracker
from aggregator import DEFAULT_REGISTRY, AggregatorServer, AggregatorSettings, Registry
from aggregator._alerts.rules import rule_from_table
from aggregator._alerts.settings import AlertSettings
from gateway import GatewaySettings, create_app
from tests.eventually import eventually
from tests.ports import free_port, free_socket

T = TypeVar("T")
ROUND_SECONDS = 0.2
DEADLINE_SECONDS = 0.15
ADMIN_TOKEN = "s3cret-admin-token"
"""The bearer token of the alert write endpoints, on the gateway and the aggregator alike."""
Wait = Literal["snapshot", "all_active", "nothing"]


class Mesh:
    """The running parts and handy clients."""

    def __init__(
        self,
        agents: dict[str, AgentServer],
        registry: Registry,
        alerts: AlertSettings | None = None,
        instances: dict[str, list[AgentServer]] | None = None,
    ) -> None:
        self.agents = agents
        """Each service's agent (its first instance's, for a service of several)."""
        self.instances = instances or {}
        """The agents of each service of several instances, in registry order."""
        self.registry = registry
        self.alerts = alerts
        """The aggregator's [alerts] settings (None: in memory, no rules)."""
        self.aggregator: AggregatorServer | None = None
        self.aggregator_port = 0
        self.server: uvicorn.Server | None = None
        self.port = 0
        self.http: httpx.AsyncClient

    @property
    def url(self) -> str:
        """Base URL of the gateway."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket URL of /ws/metrics."""
        return f"ws://127.0.0.1:{self.port}/ws/metrics"

    def tracker(self, name: str) -> EventTracker:
        """The tracker of one service's agent."""
        return self.agents[name].tracker

    async def start_aggregator(self) -> None:
        """Start the aggregator (again), on the port it had before if it had one."""
        settings = AggregatorSettings(
            port=self.aggregator_port,
            interval_seconds=ROUND_SECONDS,
            deadline_seconds=DEADLINE_SECONDS,
        )
        self.aggregator = AggregatorServer(self.registry, settings, alerts=self.alerts)
        self.aggregator_port = await self.aggregator.start()

    async def stop_aggregator(self) -> None:
        """Stop the aggregator (its streams end with UNAVAILABLE)."""
        assert self.aggregator is not None
        await self.aggregator.stop(0)
        self.aggregator = None

    async def metrics(self) -> dict[str, Any]:
        """GET /api/v1/real-time-metrics once the gateway serves a snapshot (200)."""

        async def probe() -> dict[str, Any] | None:
            response = await self.http.get("/api/v1/real-time-metrics")
            return response.json() if response.status_code == 200 else None

        return await eventually(probe, what="a 200 from /api/v1/real-time-metrics")

    async def metrics_all_active(self) -> dict[str, Any]:
        """A 200 body in which every service is active (a loaded machine may miss a deadline)."""

        async def probe() -> dict[str, Any] | None:
            body = await self.metrics()
            return body if body["inactive_apis"] == 0 else None

        return await eventually(probe, what="every service active")

    async def active_alerts(self) -> dict[str, Any]:
        """GET /api/v1/alerts/active once the gateway's alert subscription answers (200)."""

        async def probe() -> dict[str, Any] | None:
            response = await self.http.get("/api/v1/alerts/active")
            return response.json() if response.status_code == 200 else None

        return await eventually(probe, what="a 200 from /api/v1/alerts/active")


@dataclasses.dataclass(frozen=True)
class MeshOptions:
    """What a `@pytest.mark.mesh(...)` marker asks of the `mesh` fixture.

    `wait`: "snapshot" (the first 200 body), "all_active" (a body with every service active)
    or "nothing"; `alert_rules`: `[[alerts.rules]]` tables, and the aggregator runs alerts
    (the fixture then also waits for the gateway's alert list); `aggregator_first=False`: the
    gateway starts alone, answering 503, and the test starts the aggregator; `instances`:
    service name -> how many instances (agents) it runs; every other key is a
    `GatewaySettings` field.
    """

    wait: Wait = "snapshot"
    alert_rules: tuple[dict[str, Any], ...] | None = None
    aggregator_first: bool = True
    gateway: dict[str, Any] = dataclasses.field(default_factory=dict)
    instances: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(
        cls,
        *,
        wait: Wait | None = None,
        alert_rules: tuple[dict[str, Any], ...] | None = None,
        aggregator_first: bool = True,
        instances: dict[str, int] | None = None,
        **gateway: Any,
    ) -> MeshOptions:
        """The options of a marker's keyword arguments."""
        if wait is None:
            wait = "snapshot" if aggregator_first else "nothing"
        if wait not in ("snapshot", "all_active", "nothing"):
            raise ValueError(f"mesh marker: wait={wait!r} is not snapshot, all_active, nothing")
        if not aggregator_first and (wait != "nothing" or alert_rules is not None):
            raise ValueError("mesh marker: without the aggregator there is nothing to wait for")
        if alert_rules is not None:
            gateway.setdefault("admin_token", ADMIN_TOKEN)
        return cls(wait, alert_rules, aggregator_first, gateway, instances or {})

    def alerts(self, state_dir: Path) -> AlertSettings | None:
        """The aggregator's [alerts] settings: the rules, ADMIN_TOKEN, state in `state_dir`."""
        if self.alert_rules is None:
            return None
        rules = tuple(rule_from_table(index, table) for index, table in enumerate(self.alert_rules))
        return AlertSettings(state_dir=str(state_dir), admin_token=ADMIN_TOKEN, rules=rules)

    async def ready(self, mesh: Mesh) -> None:
        """Wait for what the options ask (the 503 start state when the gateway is alone)."""
        if not self.aggregator_first:
            response = await mesh.http.get("/api/v1/real-time-metrics")
            assert response.status_code == 503  # nothing yet: the state such tests start from
        if self.wait == "snapshot":
            await mesh.metrics()
        elif self.wait == "all_active":
            await mesh.metrics_all_active()
        if self.alert_rules is not None:
            await mesh.active_alerts()


@asynccontextmanager
async def serve_gateway(settings: GatewaySettings) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """The gateway app on real uvicorn (httptools) in this loop; yields (server, port)."""
    sock = free_socket()
    config = uvicorn.Config(
        create_app(settings),
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(_started(server, task), timeout=10, what="uvicorn to start")
        yield server, sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        if task.done():
            task.result()
            raise AssertionError("uvicorn stopped during start-up")
        return server.started

    return probe


@asynccontextmanager
async def running_mesh(
    *,
    alerts: AlertSettings | None = None,
    aggregator_first: bool = True,
    instances: dict[str, int] | None = None,
    **gateway_overrides: Any,
) -> AsyncIterator[Mesh]:
    """15 agents named as the built-in registry + aggregator + gateway, all on port 0.

    `alerts` are the aggregator's [alerts] settings (rules, admin token, state directory).
    With `aggregator_first=False` the gateway starts alone, dialling a free port on which
    the test starts the aggregator later (`mesh.start_aggregator()`). `instances` gives a
    service several instances: that many agents, listed in its entry's `instances`.
    """
    agents: dict[str, AgentServer] = {}
    several: dict[str, list[AgentServer]] = {}
    entries = []
    started: list[AgentServer] = []
    try:
        for entry in DEFAULT_REGISTRY:
            own = []
            for _ in range((instances or {}).get(entry.name, 1)):
                agent = AgentServer(EventTracker(entry.name))
                await agent.start()
                started.append(agent)
                own.append(agent)
            agents[entry.name] = own[0]
            addresses = tuple(f"127.0.0.1:{agent.port}" for agent in own)
            if len(own) > 1:
                several[entry.name] = own
            entries.append(
                dataclasses.replace(
                    entry,
                    host="127.0.0.1",
                    agent_port=own[0].port,
                    instances=addresses if len(own) > 1 else (),
                )
            )
        mesh = Mesh(agents, Registry(entries), alerts, several)
        if aggregator_first:
            await mesh.start_aggregator()
        else:
            mesh.aggregator_port = free_port()
        settings = GatewaySettings(
            aggregator=f"127.0.0.1:{mesh.aggregator_port}",
            stale_after_seconds=2.0,
            reconnect_initial_seconds=0.05,
            reconnect_max_seconds=0.5,
            **gateway_overrides,
        )
        try:
            async with serve_gateway(settings) as (server, port):
                mesh.server, mesh.port = server, port
                async with httpx.AsyncClient(base_url=mesh.url, timeout=10) as http:
                    mesh.http = http
                    yield mesh
        finally:
            if mesh.aggregator is not None:
                await mesh.stop_aggregator()
    finally:
        for agent in started:
            await agent.stop(0)
