"""The [gateway] section of the shared TOML file, environment overrides, and the CLI."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway import ConfigError, GatewaySettings, load_settings
from gateway.__main__ import parser, settings_from_args
from mesh_common.errors import EXIT_PORT_IN_USE, EXIT_USAGE
from tests.eventually import eventually


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    settings = load_settings(None, environ={})
    assert settings == GatewaySettings()
    assert settings.aggregator == "127.0.0.1:50100"
    assert settings.services_configured == 15


def test_the_gateway_section_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[gateway]\nhost = "0.0.0.0"\nport = 8100\naggregator = "10.0.0.5:50200"\n'
        'stale_after_seconds = 3\ncors_origins = ["http://a.example", "http://b.example"]\n'
        '\n[[services]]\nname = "one"\nhost = "127.0.0.1"\nport = 9001\ntype = "core"\n',
    )
    settings = load_settings(path, environ={})
    assert settings.host == "0.0.0.0"
    assert settings.port == 8100
    assert settings.aggregator == "10.0.0.5:50200"
    assert settings.stale_after_seconds == 3.0
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings.services_configured == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gateway]\nprot = 8000\n", "unknown key 'prot'"),
        ('[gateway]\nport = "8000"\n', "[gateway] port: must be an integer"),
        ("[gateway]\nport = 70000\n", "[gateway] port: 70000 is not in 0..65535"),
        ('[gateway]\naggregator = "localhost"\n', "'localhost' has no port; write HOST:PORT"),
        ("[gateway]\nstale_after_seconds = 0\n", "stale_after_seconds: must be > 0"),
        ("[gateway]\ncors_origins = [1]\n", "[gateway] cors_origins: must be a list of strings"),
        ("[gatway]\nport = 1\n", "gatway"),
        ("[gateway\n", "not valid TOML"),
    ],
)
def test_mistakes_are_errors_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(path, environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\naggregator = "127.0.0.1:50100"\nport = 8000\n')
    environ = {
        "METRICS_MESH_GATEWAY_AGGREGATOR": "127.0.0.1:50200",
        "METRICS_MESH_GATEWAY_PORT": "8200",
        "METRICS_MESH_GATEWAY_CORS_ORIGINS": "http://a.example, http://b.example",
        "METRICS_MESH_GATEWAY_ACCESS_LOG": "true",
    }
    settings = load_settings(path, environ=environ)
    assert settings.aggregator == "127.0.0.1:50200"
    assert settings.port == 8200
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings.access_log is True


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("METRICS_MESH_GATEWAY_PORTT", "1", "unknown [gateway] key 'portt'"),
        ("METRICS_MESH_GATEWAY_PORT", "eighty", "METRICS_MESH_GATEWAY_PORT: 'eighty'"),
        ("METRICS_MESH_GATEWAY_ACCESS_LOG", "maybe", "METRICS_MESH_GATEWAY_ACCESS_LOG"),
    ],
)
def test_bad_environment_values_are_errors(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(None, environ={name: value})


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nport = 8000\naggregator = "127.0.0.1:50100"\n')
    args = parser().parse_args(
        ["--config", str(path), "--port", "0", "--aggregator", "127.0.0.1:1"]
    )
    settings = settings_from_args(args)
    assert (settings.port, settings.aggregator) == (0, "127.0.0.1:1")


def test_a_bad_aggregator_address_on_the_command_line_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--aggregator", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "'nowhere' has no port; write HOST:PORT" in done.stderr


async def test_python_m_gateway_serves_until_terminated(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\nstale_after_seconds = 1\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--config",
        str(path),
        "--port",
        "0",
        "--aggregator",
        "127.0.0.1:1",
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert process.stderr is not None
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
            assert line, "the gateway exited before listening"
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            port = int(found[1]) if found else None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/health/live")).status_code == 200

            async def unavailable() -> httpx.Response | None:
                response = await http.get("/api/v1/real-time-metrics")
                return response if response.status_code == 503 else None

            body = (await eventually(unavailable, what="a 503")).json()
            assert "127.0.0.1:1" in body["error"]
    finally:
        process.terminate()
        rest = (await asyncio.wait_for(process.stderr.read(), 20)).decode()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert await process.wait() in (0, -15), rest


def test_bad_config_exits_with_status_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\nport = -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "[gateway] port: -1 is not in 0..65535" in done.stderr


def test_a_taken_port_exits_with_its_own_status(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "--port", str(taken)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == EXIT_PORT_IN_USE != EXIT_USAGE
    assert f"cannot listen on 127.0.0.1:{taken}" in done.stderr


def test_the_package_exports_exactly_its_public_names() -> None:
    import gateway

    assert gateway.__all__ == [
        "SECTION",
        "ConfigError",
        "GatewayError",
        "GatewaySettings",
        "RealTimeMetrics",
        "RealTimeMetricsError",
        "ServiceMetrics",
        "create_app",
        "load_settings",
    ]
    assert all(hasattr(gateway, name) for name in gateway.__all__)


def test_seed_003_names_set_the_same_keys_and_a_conflict_is_an_error() -> None:
    settings = load_settings(None, environ={"CORS_ORIGINS": "https://a.example, https://b.example"})
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    settings = load_settings(None, environ={"WEBSOCKET_MAX_CONNECTIONS": "7"})
    assert settings.max_ws_clients == 7
    same = {
        "CORS_ORIGINS": "https://a.example",
        "METRICS_MESH_GATEWAY_CORS_ORIGINS": "https://a.example",
    }
    assert load_settings(None, environ=same).cors_origins == ("https://a.example",)
    conflict = {**same, "METRICS_MESH_GATEWAY_CORS_ORIGINS": "https://b.example"}
    with pytest.raises(ConfigError, match="CORS_ORIGINS and METRICS_MESH_GATEWAY_CORS_ORIGINS"):
        load_settings(None, environ=conflict)
