"""The demo's supervisor with real child processes: start, restart, stop, kill, report."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from demo_fleet.supervisor import ProcessSpec, StartupError, Supervisor


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


async def always_ready() -> bool:
    return True


def spec(name: str, code: str, restart_delay: float = 0.1) -> ProcessSpec:
    return ProcessSpec(name, python(code), always_ready, "test child", restart_delay)


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_planned_exit_is_restarted_after_its_delay(tmp_path: Path) -> None:
    said: list[str] = []
    supervisor = Supervisor(tmp_path, say=said.append, stop_timeout=2)
    await supervisor.start(
        [spec("flaky", "import time, sys; time.sleep(0.3); sys.exit(75)")], timeout=10
    )
    first = supervisor.pids()["flaky"]
    await wait_until(lambda: supervisor.pids().get("flaky") not in (None, first))
    await supervisor.stop()
    assert any("flaky exited on purpose (status 75)" in line for line in said)
    assert sum("up  flaky" in line for line in said) >= 2


async def test_a_usage_error_is_not_restarted_and_its_log_is_shown(tmp_path: Path) -> None:
    said: list[str] = []
    supervisor = Supervisor(tmp_path, say=said.append, stop_timeout=2)
    code = "import time, sys; time.sleep(0.3); print('bad flag --x'); sys.exit(2)"
    await supervisor.start([spec("strict", code)], timeout=10)
    await wait_until(lambda: any("will not be restarted" in line for line in said))
    await supervisor.stop()
    text = "\n".join(said)
    assert "strict exited with status 2" in text and "| bad flag --x" in text


async def test_a_child_that_dies_at_startup_fails_the_start_with_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, say=lambda line: None, stop_timeout=2)

    async def never_ready() -> bool:
        return False

    broken = ProcessSpec(
        "broken", python("print('cannot bind 8009'); raise SystemExit(1)"), never_ready, "x"
    )
    with pytest.raises(StartupError, match=r"broken exited with status 1 while starting"):
        await supervisor.start([broken], timeout=10)
    await supervisor.stop()
    assert "cannot bind 8009" in (tmp_path / "broken.log").read_text()


async def test_stop_kills_what_ignores_sigterm_after_the_timeout(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, say=lambda line: None, stop_timeout=0.5)
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    polite = "import time; time.sleep(60)"
    await supervisor.start([spec("stubborn", stubborn), spec("polite", polite)], timeout=10)
    await wait_until(lambda: "ready" in (tmp_path / "stubborn.log").read_text())
    started = time.monotonic()
    killed = await supervisor.stop()
    assert killed == ["stubborn"]
    assert time.monotonic() - started < 5
    assert supervisor.pids() == {}
    assert await supervisor.stop() == []  # a second stop is harmless
