"""`python -m aggregator` as a user runs it, poked with grpcurl (a real, independent client)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.aggregator_fleet import Fleet, fleet

GRPCURL = Path(sys.executable).parent / "grpcurl"
SERVICE = "metricsmesh.v1.AggregatorService"

pytestmark = pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl is not installed")


def config_for(mesh: Fleet, path: Path) -> Path:
    lines = ["[aggregator]", "interval_seconds = 0.5", "deadline_seconds = 0.3", ""]
    for entry in mesh.registry:
        lines += [
            "[[services]]",
            f'name = "{entry.name}"',
            f"port = {entry.port}",
            f"agent_port = {entry.agent_port}",
            f'type = "{entry.type}"',
            f'data_source = "{entry.data_source}"',
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


async def grpcurl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_python_m_aggregator_serves_grpcurl_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with fleet() as mesh:
        config = config_for(mesh, tmp_path / "mesh.toml")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aggregator",
            "--config",
            str(config),
            "--port",
            "0",
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stderr is not None
            line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
            match = re.search(r"aggregator serving on (\S+)", line)
            assert match, line
            address = match.group(1)

            code, out, err = await grpcurl(address, "list")
            assert code == 0, err
            assert SERVICE in out.split()
            assert "grpc.health.v1.Health" in out.split()

            code, out, err = await grpcurl(
                "-d", '{"filter": {"service_types": ["data"]}}', address, f"{SERVICE}/GetSnapshot"
            )
            assert code == 0, err
            snapshot = json.loads(out)["snapshot"]  # grpcurl prints proto field names
            assert snapshot["services_total"] == 15
            assert snapshot["active_count"] == 11
            assert {row["service_type"] for row in snapshot["services"]} == {"data"}

            code, out, err = await grpcurl(
                "-d",
                '{"service": "metricsmesh.v1.AggregatorService"}',
                address,
                "grpc.health.v1.Health/Check",
            )
            assert code == 0 and "SERVING" in out, err

            # A subscription never ends by itself; -max-time ends the call on the client side.
            code, out, err = await grpcurl(
                "-max-time",
                "1.2",
                "-d",
                '{"last_count": 1}',
                address,
                f"{SERVICE}/StreamSnapshots",
            )
            assert "DeadlineExceeded" in err or "deadline" in err.lower()
            assert out.count('"snapshot"') >= 2  # the replayed one and at least one live one
            assert '"replayed": true' in out
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), 20)
        rest = (await process.stderr.read()).decode()
        assert returncode == 0, rest
        code, _, err = await grpcurl("-max-time", "5", address, "list")
    assert code != 0, "the aggregator still answers after SIGTERM"


async def test_bad_config_exits_2_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[aggregator]\ninterval_seconds = 1\ndeadline_seconds = 2\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator",
        "--config",
        str(path),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert "deadline_seconds: 2.0 must be shorter than interval_seconds (1.0)" in err.decode()


async def test_a_taken_port_exits_3_naming_the_address() -> None:
    async with fleet(broken=False) as mesh:
        taken = next(iter(mesh.agents.values())).port
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aggregator",
            "--port",
            str(taken),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 3, err.decode()
    assert f"127.0.0.1:{taken}" in err.decode()
    assert "already in use" in err.decode()
