"""A service of several instances: one row folding real agents exactly, k of n, per-instance
calls and backoff, and the `instances` key of the registry file."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from metricsmesh.v1 import (
    aggregator_pb2,
    aggregator_pb2_grpc,
    alerts_pb2,
    event_rate_pb2,
    event_rate_pb2_grpc,
    latency_pb2,
    snapshot_pb2,
)

from agent import AgentServer, EventTracker
from aggregator import (
    AggregatorServer,
    AggregatorSettings,
    Clocks,
    ConfigError,
    Registry,
    ServiceEntry,
    load_config,
)
from aggregator._alerts.rules import rule_from_table
from aggregator._alerts.settings import AlertSettings
from aggregator._convert import add_row
from aggregator._model import Health, RowData
from mesh_common import latency
from mesh_common.status import ServiceStatus
from mesh_common.wire_time import to_seconds
from tests.aggregator_fleet import HangingServicer, servicer_host
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.ports import free_port

NAME = "checkout"
ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
INACTIVE = snapshot_pb2.SERVICE_STATUS_INACTIVE
DEADLINE = 0.3

# Three instances with very different latencies: the merged quantiles differ from any
# average of the instances' own quantiles.
SHAPES: tuple[tuple[int, float, int], ...] = ((120, 0.001, 3), (60, 0.012, 0), (15, 0.150, 5))
"""(events, seconds per event, failed events) of each instance's `api_call` kind."""


def settings(**changes: float) -> AggregatorSettings:
    values: dict[str, float] = {
        "port": 0,
        "interval_seconds": 1.0,
        "deadline_seconds": DEADLINE,
        "min_round_spacing_seconds": 0.0,
    }
    values.update(changes)
    return AggregatorSettings(**values)  # type: ignore[arg-type]


def several(addresses: Sequence[str], name: str = NAME) -> ServiceEntry:
    """The registry entry of `name` with these instances (as the file's `instances` gives)."""
    host, port = addresses[0].rsplit(":", 1)
    return ServiceEntry(name, host, 8080, int(port), "core", instances=tuple(addresses))


async def started_instance(index: int) -> AgentServer:
    """A real agent of NAME with the events of SHAPES[index] (and a `data_fetch` on the first)."""
    events, seconds, failed = SHAPES[index]
    tracker = EventTracker(NAME)
    for event in range(events):
        tracker.observe("api_call", seconds * (1 + event % 7 / 10), error=event < failed)
    if index == 0:
        tracker.record("data_fetch", n=4)
    agent = AgentServer(tracker, grace_seconds=0)
    await agent.start()
    return agent


@asynccontextmanager
async def replicas() -> AsyncIterator[list[AgentServer]]:
    """Three running instances of NAME (each stopped at the end, if the test did not)."""
    agents = [await started_instance(index) for index in range(len(SHAPES))]
    try:
        yield agents
    finally:
        for agent in agents:
            await agent.stop(0)


def addresses_of(agents: Sequence[AgentServer]) -> list[str]:
    return [f"127.0.0.1:{agent.port}" for agent in agents]


async def snapshot_of(server: AggregatorServer) -> snapshot_pb2.Snapshot:
    """A fresh snapshot, through GetSnapshot as any client asks for one."""
    request = aggregator_pb2.GetSnapshotRequest()
    request.max_age.FromNanoseconds(0)
    async with grpc.aio.insecure_channel(server.address) as channel:
        response = await aggregator_pb2_grpc.AggregatorServiceStub(channel).GetSnapshot(request)
    return response.snapshot


async def row_when(
    server: AggregatorServer, up: int, what: str
) -> tuple[snapshot_pb2.Snapshot, snapshot_pb2.ServiceRow]:
    """The first snapshot whose row of NAME has `up` instances active."""

    async def probe() -> tuple[snapshot_pb2.Snapshot, snapshot_pb2.ServiceRow] | None:
        snapshot = await snapshot_of(server)
        (row,) = snapshot.services
        return (snapshot, row) if row.instances_up == up else None

    return await eventually(probe, what=what)


async def own_answers(agents: Sequence[AgentServer]) -> list[event_rate_pb2.GetEventRateResponse]:
    """Each agent's GetEventRate answer, asked directly."""
    answers = []
    for agent in agents:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.port}") as channel:
            stub = event_rate_pb2_grpc.EventRateServiceStub(channel)
            answers.append(await stub.GetEventRate(event_rate_pb2.GetEventRateRequest()))
    return answers


def quantiles_ms(histogram: latency.Histogram) -> list[float]:
    return [(histogram.quantile(q) or 0.0) * 1000.0 for q in (0.5, 0.95, 0.99)]


def summary_ms(summary: latency_pb2.LatencySummary) -> list[float]:
    return [to_seconds(getattr(summary, name)) * 1000.0 for name in ("p50", "p95", "p99")]


async def test_three_instances_make_one_row_whose_figures_are_their_sum() -> None:
    async with replicas() as agents:
        registry = Registry([several(addresses_of(agents))])
        async with AggregatorServer(registry, settings()) as server:
            snapshot, row = await row_when(server, 3, "3 of 3 instances active")
            answers = await own_answers(agents)
    instances = list(row.instances)
    assert (row.status, row.instances_up, row.instances_total) == (ACTIVE, 3, 3)
    assert row.error_message == ""
    assert [each.address for each in instances] == addresses_of(agents)
    assert all(each.status == ACTIVE for each in instances)
    # Counts add, exactly; rates add (over the same instances' answers).
    assert row.total_events == sum(events for events, _, _ in SHAPES) + 4
    assert row.total_events == sum(each.total_events for each in instances)
    assert row.window_events == sum(each.window_events for each in instances)
    assert row.window_errors == row.total_errors == sum(failed for _, _, failed in SHAPES)
    assert row.events_per_second == math.fsum(each.events_per_second for each in instances)
    assert row.cpu_usage_percent == math.fsum(each.cpu_usage_percent for each in instances)
    # Per kind too: api_call from all three, data_fetch from the first only.
    kinds = {kind.kind: kind for kind in row.kinds}
    assert sorted(kinds) == ["api_call", "data_fetch"]
    assert kinds["api_call"].total_events == sum(events for events, _, _ in SHAPES)
    assert kinds["data_fetch"].total_events == 4
    # Uptime and start are the longest-running instance's; the last event the latest.
    longest = max(instances, key=lambda each: to_seconds(each.uptime))
    assert row.uptime == longest.uptime and row.start_time == longest.start_time
    latest = max(to_seconds(each.last_event_time) for each in instances)
    assert to_seconds(row.last_event_time) == latest
    # Quantiles are those of the merged buckets (a direct merge of the agents' own).
    merged = latency.merge(latency.from_proto(answer.latency.histogram) for answer in answers)
    assert list(row.latency.histogram.bucket_counts) == list(merged.counts)
    assert row.latency.histogram.offset == merged.offset
    assert summary_ms(row.latency) == pytest.approx(quantiles_ms(merged), abs=1e-6)
    p99s = [summary_ms(each.latency)[2] for each in instances]
    assert summary_ms(row.latency)[2] != pytest.approx(sum(p99s) / 3, rel=0.05)  # not averaged
    api = latency.merge(
        latency.from_proto(kind.latency.histogram)
        for answer in answers
        for kind in answer.kinds
        if kind.kind == "api_call"
    )
    assert summary_ms(kinds["api_call"].latency) == pytest.approx(quantiles_ms(api), abs=1e-6)
    # Since-start buckets summed over the instances that answered would be no cumulative
    # histogram: the row's kinds have none, each instance's kinds have theirs.
    assert not kinds["api_call"].HasField("latency_since_start")
    assert all(
        kind.HasField("latency_since_start")
        for each in instances
        for kind in each.kinds
        if kind.kind == "api_call"
    )
    # The fleet's totals count the row once, with the summed figures.
    assert (snapshot.active_count, snapshot.services_total) == (1, 1)
    assert snapshot.total_events == row.total_events


async def test_a_stopped_instance_leaves_the_row_active_with_two_of_three_named() -> None:
    async with replicas() as agents:
        registry = Registry([several(addresses_of(agents))])
        async with AggregatorServer(registry, settings()) as server:
            _, before = await row_when(server, 3, "3 of 3 instances active")
            gone = addresses_of(agents)[1]
            await agents[1].stop(0)
            snapshot, row = await row_when(server, 2, "2 of 3 once one instance stopped")
    assert (row.status, row.instances_total) == (ACTIVE, 3)
    assert row.error_message.startswith(f"1 of 3 instances not active: {gone}: ")
    assert addresses_of(agents)[0] not in row.error_message
    stopped = row.instances[1]
    assert stopped.status == INACTIVE and stopped.error_message
    # The stopped instance keeps its last figures (with their age); the row sums the others.
    assert stopped.total_events == before.instances[1].total_events
    assert stopped.HasField("last_seen_time")
    assert row.total_events == row.instances[0].total_events + row.instances[2].total_events
    assert snapshot.active_count == 1


async def test_all_instances_stopped_make_the_row_inactive_with_its_last_figures() -> None:
    async with replicas() as agents:
        registry = Registry([several(addresses_of(agents))])
        async with AggregatorServer(registry, settings()) as server:
            _, before = await row_when(server, 3, "3 of 3 instances active")
            for agent in agents:
                await agent.stop(0)
            snapshot, row = await row_when(server, 0, "0 of 3 once every instance stopped")
    assert (row.status, row.instances_up, row.instances_total) == (INACTIVE, 0, 3)
    assert row.error_message.startswith("3 of 3 instances not active: ")
    for address in addresses_of(agents):
        assert address in row.error_message
    assert row.total_events == before.total_events  # the last folded figures, not zeros
    assert row.HasField("last_seen_time")
    assert (snapshot.active_count, snapshot.total_events) == (0, 0)


async def test_a_hung_instance_costs_one_deadline_and_the_others_still_count() -> None:
    hanging = HangingServicer()
    async with replicas() as agents:
        host = await servicer_host(hanging, NAME)
        try:
            addresses = [*addresses_of(agents[:2]), f"127.0.0.1:{host.port}"]
            async with AggregatorServer(Registry([several(addresses)]), settings()) as server:
                started = time.monotonic()
                snapshot, row = await row_when(server, 2, "the two answering instances")
                took = time.monotonic() - started
        finally:
            hanging.release.set()
            await host.stop(0)
    assert row.status == ACTIVE
    assert "DEADLINE_EXCEEDED" in row.instances[2].error_message
    assert to_seconds(snapshot.round_duration) < 2 * DEADLINE
    assert took < 10 * DEADLINE


async def test_each_instance_backs_off_on_its_own(clock: FakeClock) -> None:
    async with replicas() as agents:
        addresses = [*addresses_of(agents[:2]), f"127.0.0.1:{free_port()}"]
        registry = Registry([several(addresses)])
        clocks = Clocks(monotonic=clock, wall=time.time)
        async with AggregatorServer(
            registry, settings(), clocks=clocks, interval_rounds=False
        ) as server:
            rows = [(await snapshot_of(server)).services[0] for _ in range(3)]
    dead = [row.instances[2] for row in rows]
    assert [each.consecutive_failures for each in dead] == [1, 2, 2]
    assert "not called: backing off after 2 failed calls" in dead[2].error_message
    assert not dead[2].HasField("call_latency")  # not called: no latency, not a 0
    # The others are called every round, and the row stays active.
    assert all(row.instances[0].HasField("call_latency") for row in rows)
    assert [row.instances_up for row in rows] == [2, 2, 2]
    assert all(row.status == ACTIVE for row in rows)


async def test_replacing_the_registry_keeps_the_instances_that_stay() -> None:
    async with replicas() as agents:
        addresses = addresses_of(agents)
        async with AggregatorServer(Registry([several(addresses[:2])]), settings()) as server:
            await row_when(server, 2, "2 of 2 instances active")
            server.loop.replace_registry(Registry([several(addresses)]))
            _, row = await row_when(server, 3, "the third instance added")
            server.loop.replace_registry(Registry([several(addresses[1:])]))
            _, fewer = await eventually(
                lambda: _row_of_total(server, 2), what="back to two instances"
            )
    assert [each.address for each in row.instances] == addresses
    assert [each.address for each in fewer.instances] == addresses[1:]
    assert fewer.total_events == sum(each.total_events for each in fewer.instances)


async def _row_of_total(
    server: AggregatorServer, total: int
) -> tuple[snapshot_pb2.Snapshot, snapshot_pb2.ServiceRow] | None:
    snapshot = await snapshot_of(server)
    row = snapshot.services[0]
    return (snapshot, row) if row.instances_total == total and row.instances_up == total else None


async def test_a_service_of_one_agent_has_one_instance_and_no_list() -> None:
    async with replicas() as agents:
        entry = ServiceEntry(NAME, "127.0.0.1", 8080, agents[0].port, "core")
        async with AggregatorServer(Registry([entry]), settings()) as server:
            _, row = await row_when(server, 1, "the one agent active")
    assert (row.instances_up, row.instances_total, len(row.instances)) == (1, 1, 0)
    assert row.total_events == SHAPES[0][0] + 4


async def test_a_rule_on_instances_up_fires_when_one_instance_stops(tmp_path: Path) -> None:
    rule = {"name": "FewInstances", "figure": "instances_up", "comparator": "<", "threshold": 3}
    alerts = AlertSettings(state_dir=str(tmp_path), rules=(rule_from_table(0, rule),))
    async with replicas() as agents:
        registry = Registry([several(addresses_of(agents))])
        async with AggregatorServer(registry, settings(), alerts=alerts) as server:
            await row_when(server, 3, "3 of 3 instances active")
            await agents[2].stop(0)

            async def firing() -> list[alerts_pb2.Alert] | None:
                async with grpc.aio.insecure_channel(server.address) as channel:
                    stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
                    found = await stub.ListAlerts(alerts_pb2.ListAlertsRequest())
                chosen = [a for a in found.alerts if a.state == alerts_pb2.ALERT_STATE_FIRING]
                return chosen or None

            (alert,) = await eventually(firing, what="FewInstances firing")
    assert (alert.service_name, alert.value) == (NAME, 2.0)


@pytest.mark.parametrize(("status", "up"), [(ServiceStatus.ACTIVE, 1), (ServiceStatus.INACTIVE, 0)])
def test_a_pushed_row_is_one_instance_with_no_list(status: ServiceStatus, up: int) -> None:
    entry = ServiceEntry("otel-svc", "", 0, 0, "pushed", pushed=True)
    assert entry.addresses == ()
    row = RowData(entry, status, Health.UNKNOWN, "", None, 0, None, None)
    message = add_row(snapshot_pb2.Snapshot().services, row)
    assert (message.instances_up, message.instances_total, len(message.instances)) == (up, 1, 0)


# ---------------------------------------------------------------- the registry file


def registry_of(tmp_path: Path, table: str) -> Registry:
    path = tmp_path / "mesh.toml"
    path.write_text(f'[[services]]\nname = "{NAME}"\nport = 8080\ntype = "core"\n{table}\n')
    return load_config(path, environ={}).services


def test_instances_in_the_file_give_one_entry_with_every_address(tmp_path: Path) -> None:
    (entry,) = registry_of(
        tmp_path, 'instances = ["10.0.0.5:18080", "10.0.0.6:18080", "[::1]:18081"]'
    )
    assert entry.instances == ("10.0.0.5:18080", "10.0.0.6:18080", "[::1]:18081")
    assert entry.addresses == entry.instances
    assert entry.target == "10.0.0.5:18080"


def test_one_instance_is_the_same_entry_as_host_and_agent_port(tmp_path: Path) -> None:
    listed = registry_of(tmp_path, 'instances = ["10.0.0.5:18080"]')
    single = registry_of(tmp_path, 'host = "10.0.0.5"\nagent_port = 18080')
    assert listed == single
    assert listed[0].instances == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("instances = []", "instances must be a non-empty array of HOST:PORT strings"),
        ('instances = "10.0.0.5:18080"', "instances must be a non-empty array"),
        ('instances = ["10.0.0.5"]', "instances[0]: '10.0.0.5' has no port"),
        ('instances = ["a:1", "b:99999"]', "instances[1]: 'b:99999': port 99999 is not in"),
        ('instances = ["a:1", 7]', "instances[1] must be a HOST:PORT string, got 7"),
        (
            'instances = ["a:1", "b:2", "a:1"]',
            "instances[2]: a:1 is listed twice (also instances[0])",
        ),
        (
            'agent_port = 18080\ninstances = ["a:1", "b:2"]',
            "agent_port and instances both set",
        ),
        ('host = "a"\ninstances = ["a:1", "b:2"]', "host and instances both set"),
    ],
)
def test_bad_instances_are_refused_naming_the_entry(
    tmp_path: Path, table: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        registry_of(tmp_path, table)
    assert f"services[0] ('{NAME}')" in str(caught.value)
    assert message in str(caught.value)


def test_an_address_in_two_services_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(
        '[[services]]\nname = "a"\nport = 8001\ntype = "core"\nhost = "10.0.0.5"\n'
        "agent_port = 18001\n"
        '[[services]]\nname = "b"\nport = 8002\ntype = "core"\n'
        'instances = ["10.0.0.6:18002", "10.0.0.5:18001"]\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "services[1] ('b'): agent address 10.0.0.5:18001 is already used by services[0]" in (
        str(caught.value)
    )
