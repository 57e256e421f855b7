"""`metrics-mesh demo` refuses to start with a clear message when it cannot run as configured."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator import ConfigError
from demo_fleet.ports import free_ports
from demo_fleet.settings import DemoSettings, load_demo_settings


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metricsmesh_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def write_config(path: Path, service_port: int, agent_port: int, extra: str = "") -> Path:
    aggregator_port, gateway_port, upstream_port = free_ports(3)
    path.write_text(
        f"""
[aggregator]
port = {aggregator_port}

[gateway]
port = {gateway_port}

[demo]
upstream_port = {upstream_port}
{extra}

[[services]]
name = "weather-api"
port = {service_port}
agent_port = {agent_port}
type = "data"
data_source = "weather"
""",
        encoding="utf-8",
    )
    return path


def test_a_taken_port_fails_naming_the_port_and_the_service(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        (agent_port,) = free_ports(1)
        config = write_config(tmp_path / "mesh.toml", taken, agent_port)
        result = run_cli("demo", "--config", str(config), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 1
    assert f"port {taken} on 127.0.0.1 is not available (Address already in use)" in result.stderr
    assert "weather-api (HTTP port) needs it" in result.stderr
    assert "--free-ports" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing was started


def test_an_unknown_demo_key_is_an_error_naming_it(tmp_path: Path) -> None:
    ports = free_ports(2)
    config = write_config(tmp_path / "mesh.toml", *ports, extra="restart_every = 3")
    result = run_cli("demo", "--config", str(config))
    assert result.returncode == 2
    assert "[demo] unknown key 'restart_every'" in result.stderr


def test_environment_overrides_the_demo_section() -> None:
    settings = load_demo_settings(
        {"demo": {"load_scale": 2.0, "misbehave": True}},
        {"METRICS_MESH_DEMO_MISBEHAVE": "false", "METRICS_MESH_DEMO_UP_SECONDS": "7"},
    )
    assert settings == DemoSettings(load_scale=2.0, misbehave=False, up_seconds=7.0)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"METRICS_MESH_DEMO_LOAD_SCALE": "lots"}, "'lots' is not a valid float"),
        ({"METRICS_MESH_DEMO_NOT_SERVING_FOR_SECONDS": "60"}, "must be shorter than"),
        ({"METRICS_MESH_DEMO_COLOUR": "red"}, "unknown [demo] key 'colour'"),
    ],
)
def test_bad_environment_overrides_are_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_demo_settings({}, environ)


def test_port_offset_outside_the_port_range_is_refused() -> None:
    result = run_cli("demo", "--port-offset", "60000")
    assert result.returncode == 2
    assert "--port-offset 60000 moves" in result.stderr
