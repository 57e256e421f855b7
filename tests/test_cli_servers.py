"""`metrics-mesh aggregator` and `metrics-mesh gateway` run the real servers and stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from demo_fleet.ports import free_ports, port_is_free
from mesh_common.errors import EXIT_PORT_IN_USE, EXIT_USAGE
from mesh_common.transport import open_blocking_channel
from tests.cli import METRICS_MESH, needs_cli
from tests.eventually import eventually_sync

pytestmark = needs_cli


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (agent_port,) = free_ports(1)
    path = tmp_path / "mesh.toml"
    path.write_text(
        f"""
[aggregator]
interval_seconds = 0.5
deadline_seconds = 0.2

[[services]]
name = "lonely"
port = 9001
agent_port = {agent_port}
type = "core"
""",
        encoding="utf-8",
    )
    return path


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(METRICS_MESH), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(METRICS_MESH), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def aggregator(config: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    (port,) = free_ports(1)
    process = start("aggregator", "--config", str(config), "--port", str(port))
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def health(port: int) -> int | None:
    """The aggregator's health status on `port`, None when it does not answer."""
    with open_blocking_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="metricsmesh.v1.AggregatorService")
        try:
            return int(stub.Check(request, timeout=1).status)
        except grpc.RpcError:
            return None


def wait_serving(port: int) -> None:
    eventually_sync(
        lambda: health(port) == health_pb2.HealthCheckResponse.SERVING,
        timeout=30,
        what=f"the aggregator on port {port} to report SERVING",
    )


def test_aggregator_subcommand_serves_and_stops_on_sigterm(
    aggregator: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = aggregator
    wait_serving(port)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0, out
    assert port_is_free("127.0.0.1", port)[0]


@pytest.mark.parametrize("command", ["aggregator", "gateway"])
def test_a_server_on_a_taken_port_exits_3_naming_the_port(config: Path, command: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        result = run(command, "--config", str(config), "--port", str(taken))
    assert result.returncode == EXIT_PORT_IN_USE, result.stderr
    assert f"127.0.0.1:{taken}" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["aggregator", "--port", "70000"],  # refused by the option's type
        ["aggregator", "--config", "/nonexistent/mesh.toml"],  # refused by the loader
        ["gateway", "--aggregator", "localhost"],
    ],
    ids=["bad-option", "missing-config", "bad-address"],
)
def test_usage_errors_exit_2_not_3(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert result.stderr.strip()


def test_gateway_subcommand_serves_the_rest_endpoint_from_the_aggregator(
    aggregator: tuple[subprocess.Popen[str], int], config: Path
) -> None:
    _, aggregator_port = aggregator
    wait_serving(aggregator_port)
    (port,) = free_ports(1)
    gateway = start(
        "gateway",
        "--config",
        str(config),
        "--port",
        str(port),
        "--aggregator",
        f"127.0.0.1:{aggregator_port}",
    )

    def served_body() -> dict[str, object] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/api/v1/real-time-metrics")
        except httpx.HTTPError:
            return None
        body: dict[str, object] = response.json()
        return body if response.status_code == 200 else None

    try:
        body = eventually_sync(served_body, timeout=30, what="the gateway's REST body")
        # The one configured agent is not running: the fleet is reachable, the row inactive.
        assert body["inactive_apis"] == 1, body
        assert body["active_apis"] == []
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.communicate(timeout=20)


def test_the_gateway_reads_seed_003_environment_names() -> None:
    (port,) = free_ports(1)
    secret = "s" * 40
    environ = {
        **os.environ,
        "CORS_ORIGINS": "https://a.example,https://b.example",
        "JWT_SECRET_KEY": secret,
    }
    gateway = subprocess.Popen(
        [str(METRICS_MESH), "gateway", "--port", str(port), "--aggregator", "127.0.0.1:9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
    )
    base = f"http://127.0.0.1:{port}"

    def live() -> bool:
        try:
            return httpx.get(f"{base}/health/live").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        eventually_sync(live, timeout=30, what="the gateway's /health/live")
        preflight = {"Origin": "https://b.example", "Access-Control-Request-Method": "GET"}
        answer = httpx.options(f"{base}/api/v1/services", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://b.example"
        stranger = httpx.options(
            f"{base}/api/v1/services", headers={**preflight, "Origin": "https://c.example"}
        )
        assert "access-control-allow-origin" not in stranger.headers
        # JWT_SECRET_KEY turned [auth] on: a token signed with it passes, none is 401.
        assert httpx.get(f"{base}/api/v1/services").status_code == 401
        token = jwt.encode({"sub": "seed", "scope": "read", "exp": time.time() + 60}, secret)
        answer = httpx.get(f"{base}/api/v1/services", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code not in (401, 403), answer.text
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.communicate(timeout=20)


@pytest.mark.parametrize(("command", "table"), [("gateway", "gateway"), ("aggregator", "alerts")])
def test_an_admin_token_beside_auth_is_refused_at_start(
    tmp_path: Path, command: str, table: str
) -> None:
    config = tmp_path / "mesh.toml"
    config.write_text(
        f'[{table}]\nadmin_token = "old-style"\n\n[auth]\njwt_secret = "{"s" * 40}"\n',
        encoding="utf-8",
    )
    result = run(command, "--config", str(config), "--port", "0")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"[{table}] admin_token: with [auth] on" in result.stderr
    assert "Traceback" not in result.stderr
