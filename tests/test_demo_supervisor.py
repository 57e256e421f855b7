"""The demo's supervisor with real child processes: start, restart, stop, kill, report."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from demo_fleet.exit_codes import PLANNED_EXIT_STATUS
from demo_fleet.supervisor import ProcessSpec, StartupError, Supervisor
from mesh_common.errors import EXIT_USAGE
from tests.eventually import eventually


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


async def always_ready() -> bool:
    return True


def spec(name: str, code: str, restart_delay: float = 0.1) -> ProcessSpec:
    return ProcessSpec(name, python(code), always_ready, "test child", restart_delay)


async def test_a_planned_exit_is_restarted_after_its_delay(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, say=lambda line: None, stop_timeout=2)
    code = f"import time, sys; time.sleep(0.3); sys.exit({PLANNED_EXIT_STATUS})"
    await supervisor.start([spec("flaky", code)], timeout=10)
    first = supervisor.pids()["flaky"]
    await eventually(
        lambda: supervisor.pids().get("flaky") not in (None, first), what="flaky's restart"
    )
    await supervisor.stop()
    report = supervisor.report("flaky")
    assert report.starts >= 2 and not report.given_up
    assert report.exit_statuses[0] == PLANNED_EXIT_STATUS


async def test_a_usage_error_is_not_restarted_and_its_log_is_shown(tmp_path: Path) -> None:
    said: list[str] = []
    supervisor = Supervisor(tmp_path, say=said.append, stop_timeout=2)
    code = f"import time, sys; time.sleep(0.3); print('bad flag --x'); sys.exit({EXIT_USAGE})"
    await supervisor.start([spec("strict", code)], timeout=10)
    await eventually(lambda: supervisor.report("strict").given_up, what="the supervisor giving up")
    assert supervisor.pids() == {}
    await supervisor.stop()
    report = supervisor.report("strict")
    assert (report.starts, report.exit_statuses) == (1, (EXIT_USAGE,))
    assert any("| bad flag --x" in line for line in said)  # the end of its log, for the operator


async def test_a_child_that_dies_at_startup_fails_the_start_with_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, say=lambda line: None, stop_timeout=2)

    async def never_ready() -> bool:
        return False

    broken = ProcessSpec(
        "broken", python("print('cannot bind 8009'); raise SystemExit(1)"), never_ready, "x"
    )
    with pytest.raises(StartupError) as error:
        await supervisor.start([broken], timeout=10)
    await supervisor.stop()
    assert "broken" in str(error.value) and "cannot bind 8009" in str(error.value)
    assert "cannot bind 8009" in (tmp_path / "broken.log").read_text()


async def test_stop_kills_what_ignores_sigterm_after_the_timeout(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, say=lambda line: None, stop_timeout=0.5)
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    polite = "import time; time.sleep(60)"
    await supervisor.start([spec("stubborn", stubborn), spec("polite", polite)], timeout=10)
    await eventually(
        lambda: "ready" in (tmp_path / "stubborn.log").read_text(), what="stubborn to ignore TERM"
    )
    started = time.monotonic()
    killed = await supervisor.stop()
    assert killed == ["stubborn"]
    assert time.monotonic() - started < 5
    assert supervisor.pids() == {}
    assert await supervisor.stop() == []  # a second stop is harmless


async def test_a_child_killed_on_purpose_is_restarted_after_its_delay_every_time(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    supervisor = Supervisor(tmp_path, say=said.append, stop_timeout=2)
    replica = ProcessSpec(
        "replica#2", python("import time; time.sleep(60)"), always_ready, "x", 0.2, kill_after=0.3
    )
    await supervisor.start([replica], timeout=10)
    await eventually(lambda: supervisor.report("replica#2").starts >= 3, what="two kills")
    await supervisor.stop()
    report = supervisor.report("replica#2")
    assert report.exit_statuses[:2] == (-signal.SIGKILL, -signal.SIGKILL)
    assert not report.given_up
    kills = [line for line in said if "killed on purpose (SIGKILL" in line]
    assert (
        kills[:2]
        == [
            "  ~~  replica#2 killed on purpose (SIGKILL, like a crashed pod); "
            "restarting it in 0.2 s"
        ]
        * 2
    )  # no backoff: a planned crash
