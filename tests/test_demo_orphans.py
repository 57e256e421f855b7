"""SIGTERM stops the demo cleanly; even SIGKILL leaves no orphans (the kernel tells them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo_fleet.ports import port_is_free
from tests.processes import alive, descendants

METRICS_MESH = Path(sys.executable).with_name("metrics-mesh")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux"),
    pytest.mark.skipif(not METRICS_MESH.exists(), reason="pip install -e . first"),
]

SMALL_FLEET = """
[demo]
misbehave = false

[[services]]
name = "weather-api"
port = 8009
type = "data"
data_source = "weather"

[[services]]
name = "admin-api"
port = 8003
type = "core"
"""


def start_small_demo(tmp_path: Path) -> subprocess.Popen[str]:
    """`metrics-mesh demo` of SMALL_FLEET on free ports, its output piped line by line."""
    config = tmp_path / "mesh.toml"
    config.write_text(SMALL_FLEET, encoding="utf-8")
    process = subprocess.Popen(
        [
            str(METRICS_MESH),
            "demo",
            "--config",
            str(config),
            "--free-ports",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    return process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopping_the_demo_takes_every_child_down(tmp_path: Path, signum: signal.Signals) -> None:
    process = start_small_demo(tmp_path)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        for line in process.stdout:
            if "Press Ctrl-C" in line:
                break
            assert time.monotonic() < deadline
        children = descendants(process.pid)
        assert len(children) == 5  # 2 services, the fake upstream, aggregator, gateway
        generated = (tmp_path / "run" / "metrics-mesh.toml").read_text(encoding="utf-8")
        process.send_signal(signum)
        status = process.wait(timeout=30)
        assert status == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in children):
            assert time.monotonic() < deadline, [pid for pid in children if alive(pid)]
            time.sleep(0.1)
    finally:
        process.stdout.close()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    ports = [int(line.split("=")[1]) for line in generated.splitlines() if "port =" in line]
    assert len(ports) >= 6
    deadline = time.monotonic() + 10
    while not all(port_is_free("127.0.0.1", port)[0] for port in ports):
        assert time.monotonic() < deadline, "ports still in use after the children died"
        time.sleep(0.1)


def test_ctrl_c_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    process = start_small_demo(tmp_path)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while len(children) < 3:  # the services and the fake upstream are starting
            assert time.monotonic() < deadline, "nothing was started"
            assert process.poll() is None
            children = descendants(process.pid)
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 130, out
        assert "Press Ctrl-C" not in out and "stopping" in out
        assert [pid for pid in children if alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
