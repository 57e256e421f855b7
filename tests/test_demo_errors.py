"""`metrics-mesh demo` refuses to start with a clear message when it cannot run as configured."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from demo_fleet.ports import free_ports
from demo_fleet.settings import SECTION, DemoSettings
from mesh_common.config import load_mesh_file
from mesh_common.errors import EXIT_PORT_IN_USE, EXIT_USAGE, ConfigError


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


def test_a_taken_port_exits_3_naming_the_port_and_the_service(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        (agent_port,) = free_ports(1)
        config = write_config(tmp_path / "mesh.toml", taken, agent_port)
        result = run_cli("demo", "--config", str(config), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == EXIT_PORT_IN_USE, result.stderr
    assert str(taken) in result.stderr and "weather-api" in result.stderr
    assert "--free-ports" in result.stderr  # and what to do about it
    assert not (tmp_path / "run").exists()  # nothing was started


def test_an_unknown_demo_key_exits_2_naming_it(tmp_path: Path) -> None:
    ports = free_ports(2)
    config = write_config(tmp_path / "mesh.toml", *ports, extra="restart_every = 3")
    result = run_cli("demo", "--config", str(config))
    assert result.returncode == EXIT_USAGE
    assert "[demo]" in result.stderr and "'restart_every'" in result.stderr


def read_demo(tmp_path: Path, table: str, environ: dict[str, str]) -> DemoSettings:
    path = tmp_path / "mesh.toml"
    path.write_text(table, encoding="utf-8")
    return load_mesh_file(path, environ=environ).read(SECTION)


def test_environment_overrides_the_demo_table(tmp_path: Path) -> None:
    settings = read_demo(
        tmp_path,
        "[demo]\nload_scale = 2.0\nmisbehave = true\n",
        {"METRICS_MESH_DEMO_MISBEHAVE": "false", "METRICS_MESH_DEMO_UP_SECONDS": "7"},
    )
    assert settings == DemoSettings(load_scale=2.0, misbehave=False, up_seconds=7.0)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"METRICS_MESH_DEMO_LOAD_SCALE": "lots"}, "METRICS_MESH_DEMO_LOAD_SCALE"),
        ({"METRICS_MESH_DEMO_NOT_SERVING_FOR_SECONDS": "60"}, "not_serving_for_seconds"),
        ({"METRICS_MESH_DEMO_COLOUR": "red"}, "METRICS_MESH_DEMO_COLOUR"),
    ],
)
def test_bad_environment_overrides_are_errors_naming_them(
    tmp_path: Path, environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as error:
        read_demo(tmp_path, "", environ)
    assert named in str(error.value)


def test_port_offset_outside_the_port_range_exits_2() -> None:
    result = run_cli("demo", "--port-offset", "60000")
    assert result.returncode == EXIT_USAGE
    assert "--port-offset 60000" in result.stderr
