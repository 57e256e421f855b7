"""`metrics-mesh alerts` and the alert line of `top`, against a real aggregator with a rule."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, alerts_pb2
from rich.console import Console

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from aggregator._alerts.rules import rule_from_table
from aggregator._alerts.settings import AlertSettings
from demo_fleet.ports import free_ports
from gateway._alert_models import ActiveAlerts
from mesh_common.addresses import HostPort
from mesh_common.alert_json import alert_json
from mesh_common.transport import open_channel
from metricsmesh_cli.alerts import fetch_alerts
from metricsmesh_cli.top import watch
from tests.cli import cli, needs_cli
from tests.eventually import eventually

DOWN_RULE = {
    "name": "ServiceDown",
    "figure": "status",
    "comparator": "!=",
    "threshold": "active",
    "severity": "critical",
    "annotations": {"summary": "{service} is {value}"},
}

pytestmark = needs_cli


@pytest.fixture
async def aggregator(tmp_path: Path) -> AsyncIterator[AggregatorServer]:
    """One live service and one whose agent is gone (it fires ServiceDown)."""
    agent = AgentServer(EventTracker("live-service"))
    await agent.start()
    (dead_port,) = free_ports(1)
    registry = Registry(
        [
            ServiceEntry("live-service", "127.0.0.1", 8001, agent.port, "core"),
            ServiceEntry("gone-service", "127.0.0.1", 8099, dead_port, "analysis"),
        ]
    )
    alerts = AlertSettings(state_dir=str(tmp_path), rules=(rule_from_table(0, DOWN_RULE),))
    server = AggregatorServer(
        registry,
        AggregatorSettings(port=0, interval_seconds=0.2, deadline_seconds=0.15),
        alerts=alerts,
    )
    await server.start()
    # Rounds run while someone watches the snapshots (as the gateway always does).
    watcher = asyncio.create_task(_watch_snapshots(server.address))
    try:
        await eventually(lambda: server.alerts.current(False), what="the alert to fire")
        yield server
    finally:
        watcher.cancel()
        await server.stop(0)
        await agent.stop(0)


async def _watch_snapshots(address: str) -> None:
    async with open_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _ in stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest()):
                pass


async def test_alerts_table_shows_the_firing_alert(aggregator: AggregatorServer) -> None:
    status, out, err = await cli("alerts", "--aggregator", aggregator.address)
    assert status == 0, err
    assert "1 alert(s)" in out
    line = next(line for line in out.splitlines() if "ServiceDown" in line)
    for word in ("firing", "critical", "gone-service", "inactive", "gone-service is inactive"):
        assert word in line, (word, line)
    assert "live-service" not in out


async def test_alerts_json_is_the_rest_apis_alert_json(aggregator: AggregatorServer) -> None:
    status, out, err = await cli("alerts", "-o", "json", "--aggregator", aggregator.address)
    assert status == 0, err
    body = json.loads(out)
    ActiveAlerts.model_validate(body)  # GET /api/v1/alerts/active's model, field for field
    listed = await fetch_alerts(HostPort.parse(aggregator.address))
    assert body["alerts"] == [alert_json(alert) for alert in listed.alerts]  # the gateway's
    (alert,) = body["alerts"]
    assert alert["state"] == "firing" and alert["service_name"] == "gone-service"
    assert alert["severity"] == "critical" and alert["value_text"] == "inactive"
    assert alert["fired_time"].endswith("Z") and alert["resolved_time"] is None
    assert "serviceName" not in alert and "firedTime" not in alert
    assert body["firing"] == 1 and body["pending"] == 0
    assert 1 <= body["sequence"] <= listed.last_sequence  # the CLI asked first
    assert body["timestamp"].endswith("Z")


async def test_alerts_protobuf_json_is_the_protobuf_json_of_list_alerts(
    aggregator: AggregatorServer,
) -> None:
    status, out, err = await cli(
        "alerts", "-o", "protobuf-json", "--aggregator", aggregator.address
    )
    assert status == 0, err
    response = json_format.Parse(out, alerts_pb2.ListAlertsResponse())
    assert [alert.service_name for alert in response.alerts] == ["gone-service"]
    body = json.loads(out)
    (alert,) = body["alerts"]
    assert alert["state"] == "ALERT_STATE_FIRING" and alert["serviceName"] == "gone-service"
    assert int(body["lastSequence"]) >= 1


async def test_alerts_without_an_aggregator_says_where_it_looked() -> None:
    (port,) = free_ports(1)
    status, _, err = await cli("alerts", "--aggregator", f"127.0.0.1:{port}", "--timeout", "2")
    assert status == 1 and f"127.0.0.1:{port}" in err


async def test_top_shows_the_firing_count(aggregator: AggregatorServer) -> None:
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    errors = Console(record=True, width=200)
    target = HostPort.parse(aggregator.address)
    assert await watch(target, console, errors, count=8) == 0
    text = console.export_text()
    assert "ALERTS 1 firing · 0 pending" in text
