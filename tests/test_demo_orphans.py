"""SIGTERM stops the demo cleanly; even SIGKILL leaves no orphans (the kernel tells them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from demo_fleet.ports import port_is_free
from tests.cli import METRICS_MESH, needs_cli
from tests.eventually import eventually_sync
from tests.processes import alive, descendants

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux"),
    needs_cli,
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


def wait_until_up(process: subprocess.Popen[str]) -> None:
    """Read the demo's output until it says everything is up (pytest-timeout bounds it)."""
    assert process.stdout is not None
    for line in process.stdout:
        if "Press Ctrl-C" in line:
            return
    pytest.fail(f"the demo exited with status {process.wait()} before it was up")


def generated_ports(tmp_path: Path) -> list[int]:
    generated = (tmp_path / "run" / "metrics-mesh.toml").read_text(encoding="utf-8")
    return [int(line.split("=")[1]) for line in generated.splitlines() if "port =" in line]


def kill_leftovers(children: set[int]) -> None:
    for pid in children:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopping_the_demo_takes_every_child_down(tmp_path: Path, signum: signal.Signals) -> None:
    process = start_small_demo(tmp_path)
    children: set[int] = set()
    try:
        wait_until_up(process)
        children = descendants(process.pid)
        assert len(children) == 6  # 2 services, the fake upstream, aggregator, gateway, pusher
        ports = generated_ports(tmp_path)
        process.send_signal(signum)
        status = process.wait(timeout=30)
        assert status == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
        eventually_sync(
            lambda: not any(alive(pid) for pid in children),
            timeout=20,
            what="every child of the demo to end",
        )
    finally:
        assert process.stdout is not None
        process.stdout.close()
        kill_leftovers(children)
        if process.poll() is None:  # the test failed before it stopped the demo
            process.kill()
            process.wait(timeout=30)
    assert len(ports) >= 6
    eventually_sync(
        lambda: all(port_is_free("127.0.0.1", port)[0] for port in ports),
        timeout=10,
        what="every port of the demo to be free",
    )


def test_ctrl_c_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    process = start_small_demo(tmp_path)
    children: set[int] = set()

    def starting_children() -> set[int] | None:
        assert process.poll() is None, "the demo exited during start-up"
        found = descendants(process.pid)
        return found if len(found) >= 3 else None  # the services and the fake upstream

    try:
        children = eventually_sync(starting_children, timeout=30, what="the first children")
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 130, out
        assert [pid for pid in children if alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        kill_leftovers(children)
