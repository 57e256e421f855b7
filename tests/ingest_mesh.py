"""A mesh for the ingestion tests: one agent, an aggregator on fake clocks, the real gateway.

The aggregator runs rounds only when asked (`interval_rounds=False`; `IngestMesh.round()`),
on a monotonic and a wall clock that move only when the test ticks them, so a pushed row's
staleness window passes without sleeping. The gateway (real uvicorn on port 0, real clocks)
serves every round the aggregator streams; its `stale_after_seconds` is long, so a snapshot
stays served between the rounds a test asks for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, AggregatorSettings, Clocks, Registry, ServiceEntry
from aggregator._ingest.settings import IngestSettings
from gateway import GatewaySettings
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.gateway_mesh import serve_gateway

AGENT_NAME = "weather-api"
"""The one polled service."""


@dataclasses.dataclass
class IngestMesh:
    """The running parts, the fake clocks and an HTTP client of the gateway."""

    aggregator: AggregatorServer
    monotonic: FakeClock
    wall: FakeClock
    url: str
    http: httpx.AsyncClient
    tracker: EventTracker

    @property
    def ws_url(self) -> str:
        """The gateway's /ws/metrics."""
        return self.url.replace("http://", "ws://") + "/ws/metrics"

    def tick(self, seconds: float) -> None:
        """Move both aggregator clocks."""
        self.monotonic.tick(seconds)
        self.wall.tick(seconds)

    async def round(self) -> snapshot_pb2.Snapshot:
        """Run one round now (GetSnapshot max_age 0) and wait until the gateway serves it."""
        request = aggregator_pb2.GetSnapshotRequest()
        request.max_age.FromNanoseconds(0)
        async with grpc.aio.insecure_channel(self.aggregator.address) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            snapshot = (await stub.GetSnapshot(request)).snapshot

        async def served() -> bool:
            response = await self.http.get("/api/v1/real-time-metrics")
            return response.status_code == 200 and response.json()["sequence"] >= snapshot.sequence

        await eventually(served, what=f"the gateway to serve snapshot {snapshot.sequence}")
        return snapshot

    async def metrics(self) -> dict[str, Any]:
        """The REST body of the latest snapshot."""
        response = await self.http.get("/api/v1/real-time-metrics")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@contextlib.asynccontextmanager
async def ingest_mesh(
    ingest: IngestSettings | None = None, **gateway: Any
) -> AsyncIterator[IngestMesh]:
    """One agent, an aggregator (fake clocks, rounds on demand) and the gateway, on port 0."""
    monotonic, wall = FakeClock(1000.0), FakeClock(time.time())
    tracker = EventTracker(AGENT_NAME)
    agent = AgentServer(tracker, grace_seconds=0)
    await agent.start()
    try:
        registry = Registry(
            (ServiceEntry(AGENT_NAME, "127.0.0.1", 8009, agent.port, "data", "weather"),)
        )
        settings = AggregatorSettings(
            port=0, interval_seconds=10.0, deadline_seconds=5.0, min_round_spacing_seconds=0.0
        )
        async with AggregatorServer(
            registry,
            settings,
            clocks=Clocks(monotonic=monotonic, wall=wall),
            interval_rounds=False,
            ingest=ingest or IngestSettings(otlp_port=-1),  # no fixed OTLP port in tests
        ) as aggregator:
            gateway_settings = GatewaySettings(
                aggregator=aggregator.address,
                stale_after_seconds=3600.0,
                reconnect_initial_seconds=0.05,
                reconnect_max_seconds=0.5,
                services_configured=1,
                **gateway,
            )
            async with (
                serve_gateway(gateway_settings) as (_, port),
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
            ):
                mesh = IngestMesh(
                    aggregator, monotonic, wall, f"http://127.0.0.1:{port}", http, tracker
                )
                await mesh.round()
                yield mesh
    finally:
        await agent.stop(0)
