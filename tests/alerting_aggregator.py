"""One agent and an aggregator with alerts on a state directory, for the aggregator's alert tests.

`AlertingAggregator` starts and stops both on their ports again (a restart keeps the state
directory), and gives a gRPC stub of the aggregator; the `alerting` fixture (conftest.py) is
one with the admin token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from metricsmesh.v1 import aggregator_pb2_grpc, alerts_pb2

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from aggregator._alerts.settings import AlertSettings
from mesh_common.transport import open_channel

ROUNDS = AggregatorSettings(
    port=0, interval_seconds=0.2, deadline_seconds=0.1, backoff_max_seconds=0
)
"""Rounds of 0.2 s, no backoff: an agent back is seen at the next round."""


class AlertingAggregator:
    """One agent, an aggregator with alerts on a state dir, and a stub to call it."""

    def __init__(self, state_dir: Path, **alert_settings: Any) -> None:
        self.state_dir = state_dir
        self.alert_settings = AlertSettings(state_dir=str(state_dir), **alert_settings)
        self.agent: AgentServer | None = None
        self.agent_port = 0
        self.server: AggregatorServer | None = None
        self.channel: grpc.aio.Channel | None = None

    @property
    def stub(self) -> aggregator_pb2_grpc.AggregatorServiceStub:
        assert self.channel is not None
        return aggregator_pb2_grpc.AggregatorServiceStub(self.channel)

    async def start_agent(self) -> None:
        self.agent = AgentServer(EventTracker("api"), port=self.agent_port, grace_seconds=0)
        self.agent_port = await self.agent.start()

    async def stop_agent(self) -> None:
        assert self.agent is not None
        await self.agent.stop(0)

    async def start_aggregator(self) -> None:
        registry = Registry([ServiceEntry("api", "127.0.0.1", 8000, self.agent_port, "core")])
        self.server = AggregatorServer(registry, ROUNDS, alerts=self.alert_settings)
        await self.server.start()
        self.server.loop.subscribe(0)  # keep the rounds going
        self.channel = open_channel(self.server.address)

    async def stop_aggregator(self) -> None:
        assert self.server is not None and self.channel is not None
        await self.channel.close()
        await self.server.stop(0)

    async def alerts(self) -> list[alerts_pb2.Alert]:
        return list((await self.stub.ListAlerts(alerts_pb2.ListAlertsRequest())).alerts)

    async def firing(self) -> list[alerts_pb2.Alert] | None:
        alerts = [a for a in await self.alerts() if a.state == alerts_pb2.ALERT_STATE_FIRING]
        return alerts or None
