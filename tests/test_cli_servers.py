"""`metrics-mesh aggregator` and `metrics-mesh gateway` run the real servers and stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from demo_fleet.ports import free_ports, port_is_free

METRICS_MESH = Path(sys.executable).with_name("metrics-mesh")
pytestmark = pytest.mark.skipif(not METRICS_MESH.exists(), reason="pip install -e . first")


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


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(METRICS_MESH), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
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


def wait_serving(port: int) -> None:
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service="metricsmesh.v1.AggregatorService"),
                    timeout=1,
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "the aggregator never reported SERVING"
            time.sleep(0.1)


def test_aggregator_subcommand_serves_and_stops_on_sigterm(
    aggregator: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = aggregator
    wait_serving(port)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0, out
    assert f"aggregator serving on 127.0.0.1:{port} (1 services" in out
    assert port_is_free("127.0.0.1", port)[0]


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
    try:
        deadline = time.monotonic() + 30
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/real-time-metrics")
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            body = response.json()
            if response.status_code == 200:
                break
            time.sleep(0.2)
        # The one configured agent is not running: the fleet is reachable, the row inactive.
        assert body["inactive_apis"] == 1, body
        assert body["active_apis"] == []
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.communicate(timeout=20)
