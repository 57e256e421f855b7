"""Discovery: Prometheus file_sd files and http_sd URLs add services; the gateway serves the
live targets as http_sd, and a real Prometheus follows them.

Real agents, a real aggregator and gateway on ephemeral ports, a real HTTP server (uvicorn)
for the http_sd URL, and the Debian `prometheus` binary for the consumer's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from metricsmesh.v1 import aggregator_pb2_grpc, fleet_pb2

from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry, load_config
from aggregator._fleet.file_sd import FileSd
from aggregator._fleet.http_sd import HttpSd
from aggregator._fleet.settings import SECTION as DISCOVERY
from aggregator._fleet.target_groups import Discovered, read_groups
from gateway import GatewaySettings
from mesh_common.clocks import SYSTEM_CLOCKS, Clocks
from mesh_common.errors import ConfigError
from tests.aggregator_fleet import Fleet, fleet
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.fleet_files import mesh_text, names, readme_blocks, rows_become
from tests.gateway_mesh import serve_gateway
from tests.ports import free_port, free_socket

ENTRIES = (
    ServiceEntry("alpha", "127.0.0.1", 9001, 1, "core"),
    ServiceEntry("bravo", "127.0.0.1", 9002, 1, "data", "weather"),
    ServiceEntry("carol", "127.0.0.1", 9003, 1, "ai"),
)
MAX_BYTES = 4096


@pytest.fixture
async def agents() -> AsyncIterator[Fleet]:
    async with fleet(ENTRIES, broken=False) as running:
        yield running


def group(entry: ServiceEntry, **labels: str) -> dict[str, Any]:
    """The target group of `entry`: its agent, and the labels that name it."""
    base = {"service": entry.name, "type": entry.type, "port": str(entry.port)}
    if entry.data_source:
        base["data_source"] = entry.data_source
    return {"targets": [entry.target], "labels": {**base, **labels}}


def yaml_text(entries: list[ServiceEntry]) -> str:
    """The target groups of `entries`, in YAML as a person writes it."""
    lines = []
    for entry in entries:
        lines += [f"- targets: ['{entry.target}']", "  labels:", f"    service: {entry.name}"]
        lines += [f"    type: {entry.type}"]
    return "\n".join(lines) + "\n"


def discovery_mesh(path: Path, **discovery: object) -> Path:
    """A mesh file with rounds every 0.4 s, no [[services]] and the given [discovery]."""
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in discovery.items())
    path.write_text(mesh_text([], interval=0.4, extra=f"[discovery]\n{table}\n"))
    return path


def serve(config: Path) -> AggregatorServer:
    loaded = load_config(config)
    return AggregatorServer(
        loaded.services, loaded.aggregator, config_path=config, discovery=loaded.discovery
    )


async def get_fleet(address: str) -> fleet_pb2.GetFleetResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        return await stub.GetFleet(fleet_pb2.GetFleetRequest(), timeout=10)


# --- file_sd -----------------------------------------------------------------------------


async def test_file_sd_json_and_yaml_globs_add_and_remove_services(
    agents: Fleet, tmp_path: Path
) -> None:
    alpha, bravo, carol = agents.registry
    folder = tmp_path / "sd"
    folder.mkdir()
    (folder / "core.json").write_text(json.dumps([group(alpha)]))
    (folder / "data.yml").write_text(yaml_text([bravo]))
    config = discovery_mesh(tmp_path / "mesh.toml", file_sd=[f"{folder}/*.json", f"{folder}/*.yml"])
    async with serve(config) as aggregator:
        first = await rows_become(aggregator.address, {"alpha", "bravo"})  # no built-in 15
        (row,) = (r for r in first.services if r.service_name == "bravo")
        assert row.service_type == "data"
        (folder / "more.json").write_text(json.dumps([group(carol)]))
        await rows_become(aggregator.address, {"alpha", "bravo", "carol"})
        (folder / "data.yml").unlink()
        await rows_become(aggregator.address, {"alpha", "carol"})
        answer = await get_fleet(aggregator.address)
        owners = {s.service_name: s.source_kind for s in answer.services}
        assert set(owners.values()) == {fleet_pb2.FLEET_SOURCE_KIND_FILE_SD}
        assert [s.kind for s in answer.sources] == [
            fleet_pb2.FLEET_SOURCE_KIND_SERVICES,
            fleet_pb2.FLEET_SOURCE_KIND_FILE_SD,
        ]


async def test_each_target_of_a_discovered_service_is_an_instance(
    agents: Fleet, tmp_path: Path
) -> None:
    alpha = agents.registry[0]
    second = await agents.add_agent("alpha", 5)
    other = ServiceEntry("alpha", "127.0.0.1", alpha.port, second.port, alpha.type)
    sd = tmp_path / "sd.json"
    sd.write_text(json.dumps([group(alpha), group(other)]))  # two groups, one service
    config = discovery_mesh(tmp_path / "mesh.toml", file_sd=[str(sd)])
    async with serve(config) as aggregator:
        snap = await rows_become(aggregator.address, {"alpha"})

        async def both_up() -> bool:
            (row,) = (await rows_become(aggregator.address, {"alpha"})).services
            return row.instances_up == row.instances_total == 2

        await eventually(both_up, what="alpha active 2/2")
        (service,) = (await get_fleet(aggregator.address)).services
        assert list(service.agent_addresses) == [alpha.target, other.target]
        assert snap.services[0].service_name == "alpha"


async def test_a_service_of_the_mesh_file_wins_over_file_sd_and_the_conflict_is_told(
    agents: Fleet, tmp_path: Path
) -> None:
    alpha, bravo, _ = agents.registry
    sd = tmp_path / "sd.json"
    sd.write_text(json.dumps([group(bravo, service="alpha", type="ai"), group(bravo)]))
    config = tmp_path / "mesh.toml"
    text = mesh_text([alpha], interval=0.4, extra=f'[discovery]\nfile_sd = ["{sd}"]\n')
    config.write_text(text)
    async with serve(config) as aggregator:
        snap = await rows_become(aggregator.address, {"alpha", "bravo"})
        (row,) = (r for r in snap.services if r.service_name == "alpha")
        assert row.service_type == "core"  # the mesh file's entry
        answer = await get_fleet(aggregator.address)
        assert answer.conflicts == [
            f"service 'alpha' of file_sd {sd} is also in services {config}: the services "
            "entry is kept"
        ]


async def test_a_file_that_fails_to_parse_keeps_its_previous_targets(
    agents: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aggregator.fleet")
    alpha, bravo, _ = agents.registry
    sd = tmp_path / "sd.json"
    sd.write_text(json.dumps([group(alpha), group(bravo)]))
    config = discovery_mesh(tmp_path / "mesh.toml", file_sd=[str(sd)])
    async with serve(config) as aggregator:
        await rows_become(aggregator.address, {"alpha", "bravo"})
        sd.write_text('[{"targets": ["127.0.0.1:1"], "labels": {"service": "zulu"}')  # cut off

        async def failed() -> fleet_pb2.FleetSource | None:
            source = (await get_fleet(aggregator.address)).sources[1]
            return source if source.error else None

        source = await eventually(failed, what="the file_sd source to fail")
        assert f"{sd}: not valid JSON" in source.error
        assert source.service_count == 2
        await rows_become(aggregator.address, {"alpha", "bravo"})
        sd.write_text(json.dumps([{"targets": ["127.0.0.1:99999"], "labels": {"job": "x"}}]))

        async def says_port() -> str | None:
            error = (await get_fleet(aggregator.address)).sources[1].error
            return error if "99999" in error else None

        assert "group 0: targets[0]" in await eventually(says_port, what="the bad port")
        assert names(await rows_become(aggregator.address, {"alpha", "bravo"}))
    messages = [r.getMessage() for r in caplog.records if r.name == "aggregator.fleet"]
    assert len(messages) == 2, messages  # one per distinct problem


async def test_an_empty_file_keeps_its_services_for_one_re_read(tmp_path: Path) -> None:
    """A producer that truncates then writes: the empty moment costs nothing."""
    sd = tmp_path / "sd.yaml"
    entry = ServiceEntry("alpha", "127.0.0.1", 9001, 18001, "core")
    sd.write_text(yaml_text([entry]))
    source = FileSd([str(sd)], clocks=SYSTEM_CLOCKS, max_bytes=MAX_BYTES)
    assert [e.name for e in source.entries] == ["alpha"]
    sd.write_text("")  # truncated, not written yet
    await source.refresh()
    assert [e.name for e in source.entries] == ["alpha"]
    sd.write_text(yaml_text([entry, ServiceEntry("bravo", "127.0.0.1", 9002, 18002, "data")]))
    await source.refresh()  # the re-read finds it written
    assert [e.name for e in source.entries] == ["alpha", "bravo"]
    sd.write_text("\n")  # emptied for good this time
    await source.refresh()
    assert len(source.entries) == 2
    await source.refresh()  # one re-read later, still empty: it is
    assert source.entries == () and not source.status.error


async def test_a_file_larger_than_max_bytes_is_refused(tmp_path: Path) -> None:
    sd = tmp_path / "sd.json"
    entry = ServiceEntry("alpha", "127.0.0.1", 9001, 18001, "core")
    sd.write_text(json.dumps([group(entry)]))
    source = FileSd([str(sd)], clocks=SYSTEM_CLOCKS, max_bytes=MAX_BYTES)
    sd.write_text(json.dumps([group(entry)] * 100))
    await source.refresh()
    assert source.status.error == f"{sd}: larger than max_bytes ({MAX_BYTES} bytes)"
    assert [e.name for e in source.entries] == ["alpha"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("file_sd", ["targets/*.txt"], "file_sd: 'targets/*.txt' must end in .json, .yml, .yaml"),
        ("http_sd", ["ftp://sd"], "http_sd: 'ftp://sd' is not an http:// or https:// URL"),
        ("http_sd_timeout_seconds", 0, "http_sd_timeout_seconds: 0.0 must be a positive"),
    ],
)
def test_a_bad_discovery_table_names_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace(".", r"\.")):
        DISCOVERY.parse({key: value}, {})


# --- http_sd -----------------------------------------------------------------------------


@dataclass
class SdServer:
    """A real HTTP server answering what the test sets; counts requests, keeps their headers."""

    body: bytes = b"[]"
    status: int = 200
    content_type: str = "application/json"
    hang: asyncio.Event | None = None
    """While set to an event, requests wait for it (a hung endpoint)."""
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sd"

    def answer(self, groups: list[dict[str, Any]]) -> None:
        self.body, self.status, self.content_type = (
            json.dumps(groups).encode(),
            200,
            "application/json",
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        if self.hang is not None:
            await self.hang.wait()
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", self.content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": self.body})


@contextlib.asynccontextmanager
async def sd_server() -> AsyncIterator[SdServer]:
    app = SdServer()
    sock = free_socket()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    app.port = sock.getsockname()[1]
    try:
        await eventually(lambda: server.started, what="the http_sd server")
        yield app
    finally:
        if app.hang is not None:
            app.hang.set()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def http_source(url: str, clock: FakeClock, *, timeout: float = 5.0) -> HttpSd:
    clocks = Clocks(monotonic=clock, wall=SYSTEM_CLOCKS.wall)
    return HttpSd(
        url, clocks=clocks, refresh_seconds=30, timeout_seconds=timeout, max_bytes=MAX_BYTES
    )


async def test_http_sd_keeps_the_last_good_list_through_errors_and_oversized_bodies(
    clock: FakeClock,
) -> None:
    alpha = ServiceEntry("alpha", "10.0.0.5", 9001, 18001, "core")
    async with sd_server() as server:
        source = http_source(server.url, clock)
        try:
            server.answer([group(alpha)])
            await source.refresh(force=True)
            assert [e.name for e in source.entries] == ["alpha"] and not source.status.error
            assert server.headers[-1]["x-prometheus-refresh-interval-seconds"] == "30"
            cases = [
                (500, "application/json", b"[]", "HTTP 500, not 200"),
                (200, "text/html", b"<html>", "Content-Type 'text/html', not application/json"),
                (200, "application/json", b"[" + b" " * MAX_BYTES + b"]", "larger than max_bytes"),
                (200, "application/json", b'{"targets": []}', "must be a list of target groups"),
            ]
            for status, kind, body, reason in cases:
                server.status, server.content_type, server.body = status, kind, body
                await source.refresh(force=True)
                assert reason in source.status.error, (reason, source.status.error)
                assert [e.name for e in source.entries] == ["alpha"]
            server.answer([])
            await source.refresh(force=True)
            assert source.entries == () and not source.status.error  # [] is a valid answer
        finally:
            await source.close()


async def test_http_sd_is_read_every_refresh_interval_on_its_clock(clock: FakeClock) -> None:
    async with sd_server() as server:
        source = http_source(server.url, clock)
        try:
            await source.refresh()  # due at once

            async def read(count: int) -> bool:
                return len(server.headers) == count and not source.status.error.startswith("not")

            await eventually(lambda: read(1), what="the first read")
            await source.refresh()
            clock.tick(29)
            await source.refresh()
            assert len(server.headers) == 1  # not due before the refresh interval
            clock.tick(1)
            await source.refresh()
            await eventually(lambda: read(2), what="the second read")
        finally:
            await source.close()


async def test_a_hung_http_sd_url_costs_its_timeout_and_keeps_the_list(clock: FakeClock) -> None:
    alpha = ServiceEntry("alpha", "10.0.0.5", 9001, 18001, "core")
    async with sd_server() as server:
        source = http_source(server.url, clock, timeout=0.3)
        try:
            server.answer([group(alpha)])
            await source.refresh(force=True)
            server.hang = asyncio.Event()
            await source.refresh(force=True)
            assert source.status.error == f"{server.url}: no answer within 0.3 s"
            assert [e.name for e in source.entries] == ["alpha"]
        finally:
            await source.close()


async def test_an_aggregator_follows_an_http_sd_url(agents: Fleet, tmp_path: Path) -> None:
    alpha, bravo, _ = agents.registry
    async with sd_server() as server:
        server.answer([group(alpha)])
        config = discovery_mesh(
            tmp_path / "mesh.toml", http_sd=[server.url], http_sd_refresh_seconds=0.2
        )
        async with serve(config) as aggregator:
            await rows_become(aggregator.address, {"alpha"})
            server.answer([group(alpha), group(bravo)])
            await rows_become(aggregator.address, {"alpha", "bravo"})
            server.status = 503
            await eventually(
                lambda: "HTTP 503" in aggregator.fleet.statuses[1].error, what="the 503 seen"
            )
            await rows_become(aggregator.address, {"alpha", "bravo"})


# --- the gateway's http_sd endpoint ------------------------------------------------------


@contextlib.asynccontextmanager
async def mesh_with_gateway(registry: Registry) -> AsyncIterator[tuple[AggregatorServer, int]]:
    settings = AggregatorSettings(port=0, interval_seconds=0.4, deadline_seconds=0.2)
    async with (
        AggregatorServer(registry, settings) as aggregator,
        serve_gateway(GatewaySettings(aggregator=aggregator.address)) as (_, port),
    ):
        yield aggregator, port


async def test_the_gateway_serves_the_live_targets_as_http_sd_and_a_mesh_follows_it(
    agents: Fleet, tmp_path: Path
) -> None:
    async with mesh_with_gateway(agents.registry) as (_, port):
        url = f"http://127.0.0.1:{port}/api/v1/fleet/http_sd"
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        groups = response.json()
        assert groups[1] == {
            "targets": [agents.registry[1].target],
            "labels": {
                "__meta_metricsmesh_service": "bravo",
                "__meta_metricsmesh_type": "data",
                "__meta_metricsmesh_data_source": "weather",
                "__meta_metricsmesh_port": "9002",
                "__meta_metricsmesh_source": "built-in",
            },
        }
        # A second aggregator reading that endpoint calls the same fleet, types and all.
        config = discovery_mesh(tmp_path / "mesh.toml", http_sd=[url])
        async with serve(config) as follower:
            snap = await rows_become(follower.address, {"alpha", "bravo", "carol"})
            assert {r.service_name: r.service_type for r in snap.services} == {
                e.name: e.type for e in agents.registry
            }


async def test_the_http_sd_endpoint_answers_503_without_the_aggregator() -> None:
    settings = GatewaySettings(aggregator=f"127.0.0.1:{free_port()}")
    async with serve_gateway(settings) as (_, port), httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/api/v1/fleet/http_sd")
    assert response.status_code == 503 and "did not answer" in response.json()["error"]


async def test_a_real_prometheus_follows_the_fleet_through_the_gateway(
    agents: Fleet, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (Debian package `prometheus`)")
    alpha, bravo, carol = agents.registry
    config = tmp_path / "mesh.toml"
    config.write_text(mesh_text([alpha, bravo], interval=0.4))
    loaded = load_config(config)
    async with (
        AggregatorServer(loaded.services, loaded.aggregator, config_path=config) as aggregator,
        serve_gateway(GatewaySettings(aggregator=aggregator.address)) as (_, port),
        prometheus(binary, tmp_path, port) as prom,
    ):

        async def targets(wanted: set[str]) -> list[dict[str, Any]] | None:
            try:
                response = await prom.get("/api/v1/targets")
            except httpx.TransportError:
                return None
            if response.status_code != 200:
                return None
            active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
            found = {t["labels"].get("service") for t in active}
            return active if found == wanted else None

        active = await eventually(
            lambda: targets({"alpha", "bravo"}), timeout=60, what="Prometheus's targets"
        )
        by_service = {t["labels"]["service"]: t for t in active}
        assert by_service["bravo"]["labels"]["instance"] == bravo.target
        assert by_service["bravo"]["labels"]["job"] == "mesh"
        discovered = by_service["bravo"]["discoveredLabels"]
        assert discovered["__meta_metricsmesh_type"] == "data"
        assert discovered["__meta_metricsmesh_source"] == str(config)
        config.write_text(mesh_text([alpha, carol], interval=0.4))  # the fleet changes
        await eventually(
            lambda: targets({"alpha", "carol"}), timeout=60, what="Prometheus to follow"
        )


@contextlib.asynccontextmanager
async def prometheus(
    binary: str, folder: Path, gateway_port: int
) -> AsyncIterator[httpx.AsyncClient]:
    """A Prometheus configured as the README says: its targets from the gateway's http_sd."""
    (readme,) = readme_blocks("yaml")
    url = "      - url: http://127.0.0.1:8000/api/v1/fleet/http_sd\n"
    assert url in readme
    ours = url.replace("8000", str(gateway_port)) + "        refresh_interval: 1s\n"  # faster
    config = folder / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n" + readme.replace(url, ours))
    port = free_port()
    with (folder / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={folder / 'data'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 10)


def test_the_readme_discovery_examples_read_as_documented() -> None:
    (table,) = (block for block in readme_blocks("toml") if block.startswith("[discovery]"))
    settings = DISCOVERY.parse(tomllib.loads(table)["discovery"], {})
    assert settings.file_sd[0].endswith("*.json") and settings.http_sd[0].startswith("http://")
    (groups,) = readme_blocks("json")
    assert read_groups(json.loads(groups), "README") == {
        "weather-api": Discovered(
            "weather-api", "data", "weather", 18009, ("10.0.0.5:18009", "10.0.0.6:18009")
        )
    }
