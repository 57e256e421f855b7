"""`metrics-mesh snapshot` and `metrics-mesh top` against a real aggregator and real agents."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import json_format
from metricsmesh.v1 import snapshot_pb2
from rich.console import Console

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from demo_fleet.ports import free_ports
from gateway import RealTimeMetrics
from mesh_common.addresses import HostPort
from mesh_common.errors import EXIT_USAGE
from metricsmesh_cli.top import watch
from tests.cli import METRICS_MESH, cli, needs_cli
from tests.eventually import eventually

NAMES = ("busy-ingest", "quiet-admin", "weather-feed", "gone-service")


@dataclass
class Fleet:
    aggregator: AggregatorServer
    agents: list[AgentServer]

    @property
    def address(self) -> str:
        return self.aggregator.address

    @property
    def target(self) -> HostPort:
        return HostPort.parse(self.aggregator.address)


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    busy = EventTracker("busy-ingest")
    busy.record("message", 500)
    quiet = EventTracker("quiet-admin")
    quiet.record("api_call", 3)
    weather = EventTracker("weather-feed")
    weather.record("data_fetch", 40)
    agents = [AgentServer(tracker) for tracker in (busy, quiet, weather)]
    for agent in agents:
        await agent.start()
    (dead_port,) = free_ports(1)
    registry = Registry(
        [
            ServiceEntry("busy-ingest", "127.0.0.1", 8001, agents[0].port, "core"),
            ServiceEntry("quiet-admin", "127.0.0.1", 8003, agents[1].port, "core"),
            ServiceEntry("weather-feed", "127.0.0.1", 8009, agents[2].port, "data", "weather"),
            ServiceEntry("gone-service", "127.0.0.1", 8099, dead_port, "analysis"),
        ]
    )
    settings = AggregatorSettings(port=0, interval_seconds=0.5, deadline_seconds=0.4)
    aggregator = AggregatorServer(registry, settings)
    await aggregator.start()
    try:
        yield Fleet(aggregator, agents)
    finally:
        await aggregator.stop(0)
        for agent in agents:
            await agent.stop(0)


pytestmark = needs_cli


async def test_snapshot_json_speaks_the_rest_bodys_field_names(fleet: Fleet) -> None:
    status, out, err = await cli("snapshot", "--aggregator", fleet.address, "-o", "json")
    assert status == 0, err
    body = json.loads(out)
    RealTimeMetrics.model_validate(body)  # the REST body's model, field for field
    by_name = {row["service_name"]: row for row in body["active_apis"]}
    assert by_name["busy-ingest"]["status"] == "active"
    assert by_name["busy-ingest"]["total_events"] == 500
    assert [row["service_name"] for row in body["inactive_services"]] == ["gone-service"]
    assert body["data_sources_active"] == ["weather"] and body["total_events"] == 543


async def test_snapshot_protobuf_json_is_the_protobuf_json_of_the_fleet(fleet: Fleet) -> None:
    status, out, err = await cli("snapshot", "--aggregator", fleet.address, "-o", "protobuf-json")
    assert status == 0, err
    body = json.loads(out)
    snapshot = json_format.Parse(out, snapshot_pb2.Snapshot())
    assert [row.service_name for row in snapshot.services] == list(NAMES)
    by_name = {row["serviceName"]: row for row in body["services"]}
    assert by_name["busy-ingest"]["status"] == "SERVICE_STATUS_ACTIVE"
    assert by_name["busy-ingest"]["totalEvents"] == "500"
    assert by_name["gone-service"]["status"] == "SERVICE_STATUS_INACTIVE"
    assert body["dataSourcesActive"] == ["weather"]
    assert int(body["totalEvents"]) == 543


async def test_snapshot_table_shows_every_service_and_its_status(fleet: Fleet) -> None:
    status, out, err = await cli("snapshot", "--aggregator", fleet.address)
    assert status == 0, err
    assert "snapshot #" in out
    lines = {name: next(line for line in out.splitlines() if name in line) for name in NAMES}
    assert "active" in lines["busy-ingest"] and "500" in lines["busy-ingest"]
    assert "inactive" in lines["gone-service"]
    assert "3 active" in out and "1 inactive" in out
    assert "data sources: weather" in out


async def test_a_piped_table_holds_every_column_whole(fleet: Fleet) -> None:
    # A pipe has no width; rich takes 80 and would squeeze 13 columns into it ("EV", "P").
    status, out, err = await cli("snapshot", "--aggregator", fleet.address, env={"COLUMNS": "80"})
    assert status == 0, err
    for header in ("SERVICE", "STATUS", "EVENTS/S", "ERRORS", "P99", "EVENTS/H", "LAST EVENT"):
        assert header in out, out
    assert "busy-ingest" in out


async def test_a_stopped_service_keeps_its_last_figures_in_the_table_with_their_age(
    fleet: Fleet,
) -> None:
    def quiet_admin_status() -> str | None:
        latest = fleet.aggregator.loop.latest
        if latest is None:
            return None
        return next(r.status.name for r in latest.rows if r.entry.name == "quiet-admin")

    await eventually(lambda: quiet_admin_status() == "ACTIVE", what="quiet-admin answering")
    await fleet.agents[1].stop(0)
    await eventually(lambda: quiet_admin_status() == "INACTIVE", what="quiet-admin down")
    status, out, err = await cli("snapshot", "--aggregator", fleet.address)
    assert status == 0, err
    line = next(line for line in out.splitlines() if "quiet-admin" in line)
    assert "inactive" in line
    assert " 3 " in f" {line} "  # its 3 events, not 0 and not "-"
    assert "figures from" in line and "ago" in line
    gone = next(line for line in out.splitlines() if "gone-service" in line)
    assert "figures from" not in gone  # never answered: nothing to show
    assert "3 active" not in out and "2 active" in out


async def test_snapshot_filters_by_type_and_finds_the_aggregator_from_env(fleet: Fleet) -> None:
    env = {"METRICS_MESH_AGGREGATOR_PORT": str(fleet.aggregator.port)}
    status, out, err = await cli("snapshot", "--type", "data", "-o", "json", env=env)
    assert status == 0, err
    body = json.loads(out)
    names = [row["service_name"] for row in body["active_apis"] + body["inactive_services"]]
    assert names == ["weather-feed"]


async def test_a_filtered_table_sums_up_the_rows_it_shows_not_the_fleet(fleet: Fleet) -> None:
    await eventually(lambda: fleet.aggregator.loop.history, what="a first round")
    status, out, err = await cli("snapshot", "--aggregator", fleet.address, "--type", "core")
    assert status == 0, err
    summary = next(line for line in out.splitlines() if " ev/s" in line)
    # busy-ingest 500 + quiet-admin 3 events; weather-feed's 40 and gone-service are not shown.
    assert "2 active  0 inactive  0 error  of 2 shown (4 configured)" in summary
    assert "total 503" in summary and "weather" not in summary
    status, out, err = await cli("snapshot", "--aggregator", fleet.address)
    summary = next(line for line in out.splitlines() if " ev/s" in line)
    assert "3 active  1 inactive  0 error  of 4 " in summary and "total 543" in summary


async def test_snapshot_of_an_unknown_service_is_refused_naming_it(fleet: Fleet) -> None:
    status, out, err = await cli("snapshot", "--aggregator", fleet.address, "--service", "nope")
    assert status == EXIT_USAGE and out == ""
    assert fleet.address in err and "nope" in err


@pytest.mark.parametrize("option", ["--type", "--service"])
async def test_an_unknown_type_is_refused_like_an_unknown_service(
    fleet: Fleet, option: str
) -> None:
    status, out, err = await cli("snapshot", "--aggregator", fleet.address, option, "nosuch")
    assert status == EXIT_USAGE and out == ""
    assert "'nosuch'" in err and "known:" in err


async def test_snapshot_without_an_aggregator_says_where_it_looked() -> None:
    (port,) = free_ports(1)
    status, _out, err = await cli("snapshot", "--aggregator", f"127.0.0.1:{port}")
    assert status == 1
    assert f"127.0.0.1:{port}" in err


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:99999"])
async def test_snapshot_with_an_address_that_is_not_host_port_exits_2(address: str) -> None:
    status, out, err = await cli("snapshot", "--aggregator", address)
    assert status == EXIT_USAGE
    assert out == ""
    assert "HOST:PORT" in err and repr(address) in err


async def test_snapshot_with_a_configured_port_0_exits_2_asking_for_an_address() -> None:
    env = {"METRICS_MESH_AGGREGATOR_PORT": "0"}
    status, _out, err = await cli("snapshot", env=env)
    assert status == EXIT_USAGE
    assert "--aggregator" in err


async def test_snapshot_dials_loopback_for_a_wildcard_bind_host(fleet: Fleet) -> None:
    env = {
        "METRICS_MESH_AGGREGATOR_HOST": "0.0.0.0",
        "METRICS_MESH_AGGREGATOR_PORT": str(fleet.aggregator.port),
    }
    status, out, err = await cli("snapshot", "-o", "protobuf-json", env=env)
    assert status == 0, err
    assert len(json.loads(out)["services"]) == len(NAMES)


def recording_console() -> Console:
    return Console(record=True, file=io.StringIO(), width=200, force_terminal=True)


async def test_top_renders_the_fleet_sorted_by_rate_in_colour(fleet: Fleet) -> None:
    console, errors = recording_console(), recording_console()
    status = await watch(fleet.target, console, errors, count=2)
    assert status == 0
    text = console.export_text(clear=False)
    last_frame = text[text.rindex("snapshot #") :]
    positions = [last_frame.index(name) for name in ("busy-ingest", "weather-feed", "quiet-admin")]
    assert positions == sorted(positions)  # busiest first
    assert last_frame.index("gone-service") > positions[-1]  # inactive rows last
    styled = console.export_text(styles=True)
    assert "\x1b[1;32mactive" in styled and "\x1b[1;33minactive" in styled


async def test_top_filters_by_type(fleet: Fleet) -> None:
    console, errors = recording_console(), recording_console()
    assert await watch(fleet.target, console, errors, types=["core"], count=1) == 0
    text = console.export_text()
    assert "busy-ingest" in text and "quiet-admin" in text
    assert "weather-feed" not in text and "gone-service" not in text
    assert "type=core" in text


@pytest.mark.parametrize(
    ("option", "known"), [("--service", "busy-ingest"), ("--type", "analysis")]
)
async def test_top_with_an_unknown_service_or_type_exits_2_naming_it(
    fleet: Fleet, option: str, known: str
) -> None:
    status, out, err = await cli("top", "--aggregator", fleet.address, option, "nosuch")
    assert status == EXIT_USAGE and out == ""  # not even the waiting frame
    assert fleet.address in err and "'nosuch'" in err
    assert "known:" in err and known in err


async def test_top_without_an_aggregator_exits_1_saying_where_it_looked() -> None:
    (port,) = free_ports(1)
    console, errors = recording_console(), recording_console()
    assert await watch(HostPort("127.0.0.1", port), console, errors) == 1
    assert f"127.0.0.1:{port}" in errors.export_text()


async def test_top_says_so_when_the_stream_ends(fleet: Fleet) -> None:
    console, errors = recording_console(), recording_console()
    task = asyncio.create_task(watch(fleet.target, console, errors))
    await eventually(
        lambda: "busy-ingest" in console.export_text(clear=False), what="top's first frame"
    )
    await fleet.aggregator.stop(0)
    assert await asyncio.wait_for(task, timeout=10) == 1
    assert fleet.address in errors.export_text()


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
async def test_top_in_a_real_terminal_refreshes_and_quits_on_ctrl_c(
    fleet: Fleet, tmp_path: Path
) -> None:
    socket_name = f"mm-top-{os.getpid()}"
    base = ["-L", socket_name]
    # The pane's size, not COLUMNS/LINES inherited from wherever the tests run. The shell
    # reports top's exit status (tmux may reap a dead pane late, so its status is no help).
    command = (
        f"trap '' INT; env -u COLUMNS -u LINES {METRICS_MESH} top --aggregator {fleet.address}; "
        'echo "top exited with status $?"; sleep 60'
    )
    await asyncio.to_thread(
        tmux, *base, "new-session", "-d", "-x", "200", "-y", "40", "-s", "top", command
    )
    sequences: set[str] = set()

    async def screen() -> str:
        return await asyncio.to_thread(tmux, *base, "capture-pane", "-p", "-t", "top")

    async def refreshed_screen() -> str | None:
        text = await screen()
        sequences.update(word for word in text.split() if word.startswith("#"))
        return text if all(name in text for name in NAMES) and len(sequences) >= 2 else None

    async def exited_screen() -> str | None:
        text = await screen()
        return text if "top exited with status" in text else None

    try:
        shown = await eventually(
            refreshed_screen, timeout=20, what=f"every service and two refreshes ({sequences})"
        )
        assert shown.count("snapshot #") == 1  # refreshed in place, not scrolled
        rows = [line for line in shown.splitlines() if line.startswith("│")]
        assert len(rows) == len(NAMES)  # one line per service on a wide terminal
        await asyncio.to_thread(tmux, *base, "send-keys", "-t", "top", "C-c")
        final = await eventually(exited_screen, timeout=10, what="top to quit on Ctrl-C")
        assert "top exited with status 0" in final
        assert final.count("snapshot #") == 1  # the last frame stays on screen
    finally:
        subprocess.run(["tmux", *base, "kill-server"], capture_output=True, timeout=10)
