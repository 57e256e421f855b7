"""Starts, watches, restarts and stops the demo's processes, each in its own process group.

Every child runs in a new session (so Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in order) and, on Linux, gets SIGTERM from the kernel if the
supervisor dies without cleaning up. Its output goes to `<run dir>/<name>.log`. Stopping sends
SIGTERM to every process group, waits up to the stop timeout, then SIGKILLs what is left.
A child may also be killed on purpose now and then (`ProcessSpec.kill_after`), as a crashed pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from demo_fleet.errors import StartupError, SupervisorError
from demo_fleet.exit_codes import NO_RESTART_STATUSES, PLANNED_EXIT_STATUS
from demo_fleet.probes import Probe

PROBE_INTERVAL_SECONDS = 0.2
LOG_TAIL_LINES = 15


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One process of the demo: how to start it and how to tell that it is ready."""

    name: str
    argv: tuple[str, ...]
    ready: Probe
    summary: str
    """What to print once it is up, e.g. `http 127.0.0.1:8009  agent 127.0.0.1:18009`."""
    restart_delay: float = 10.0
    """Seconds to wait before restarting it after it exits."""
    kill_after: float | None = None
    """Kill it (SIGKILL, like a crashed pod) this many seconds after each time it is ready;
    it is restarted `restart_delay` later, every time (None: never)."""


@dataclass(frozen=True, slots=True)
class ChildReport:
    """What became of one child so far: how often it started, how it exited."""

    name: str
    starts: int
    exit_statuses: tuple[int, ...]
    """Its exit statuses while it was supervised, in order (not the final stop's); a kill
    by signal N is -N."""
    given_up: bool
    """True once the supervisor will not restart it (a usage error, a port in use)."""


@dataclass(slots=True)
class _Child:
    spec: ProcessSpec
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    failures: int = 0
    exits: list[int] = field(default_factory=list)
    given_up: bool = False


PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """The C library's prctl, looked up in the parent (a forked child must not load it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGTERM this child when the supervisor (its spawning thread) dies."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file, indented, or a note that it is empty."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        text = []
    return "\n".join(f"    | {line}" for line in text) or "    | (no output)"


class Supervisor:
    """Owns the demo's child processes for their whole life."""

    def __init__(
        self,
        run_dir: Path,
        *,
        say: Callable[[str], None],
        stop_timeout: float = 5.0,
    ) -> None:
        if threading.current_thread() is not threading.main_thread():
            # PR_SET_PDEATHSIG fires when the spawning *thread* ends, not the process.
            raise SupervisorError("the supervisor must run on the main thread")
        self.run_dir = run_dir
        self._say = say
        self._stop_timeout = stop_timeout
        self._children: dict[str, _Child] = {}
        self._batches: list[list[_Child]] = []
        """Children by `start()` call; `stop()` stops the last batch first."""
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    def pids(self) -> dict[str, int]:
        """The pid of every child currently running, by name."""
        return {
            name: child.process.pid
            for name, child in self._children.items()
            if child.process is not None and child.process.returncode is None
        }

    def report(self, name: str) -> ChildReport:
        """What became of the child called `name` so far; KeyError if there is none."""
        child = self._children[name]
        return ChildReport(name, child.starts, tuple(child.exits), child.given_up)

    async def start(self, specs: Sequence[ProcessSpec], *, timeout: float) -> None:
        """Start `specs` together and wait until every one is ready, printing progress.

        Raises StartupError naming the first one that exits or is not ready within `timeout`.
        """
        children: list[_Child] = []
        self._batches.append(children)  # before spawning: a stop during start finds them
        for spec in specs:
            child = _Child(spec, self.run_dir / f"{spec.name}.log")
            self._children[spec.name] = child
            children.append(child)
            await self._spawn(child)
        deadline = time.monotonic() + timeout
        results = await asyncio.gather(
            *(self._await_ready(child, deadline) for child in children), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        for child in children:
            self._watchers.append(asyncio.create_task(self._watch(child), name=child.spec.name))

    async def _spawn(self, child: _Child) -> None:
        with child.log_path.open("ab") as log:
            child.process = await asyncio.create_subprocess_exec(
                *child.spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child.starts += 1

    async def _await_ready(self, child: _Child, deadline: float) -> None:
        process = child.process
        assert process is not None
        started = time.monotonic()
        while True:
            if process.returncode is not None:
                raise StartupError(
                    f"{child.spec.name} exited with status {process.returncode} while starting; "
                    f"the end of its log ({child.log_path}):\n{tail(child.log_path)}"
                )
            if await child.spec.ready():
                break
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{child.spec.name} was not ready in time (pid {process.pid}); "
                    f"the end of its log ({child.log_path}):\n{tail(child.log_path)}"
                )
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
        self._say(
            f"  up  {child.spec.name:<28} {child.spec.summary}  "
            f"(pid {process.pid}, ready in {time.monotonic() - started:.1f} s)"
        )

    async def _watch(self, child: _Child) -> None:
        """Restart `child` whenever it exits, until the supervisor stops."""
        while not self._stopping:
            status, killed = await self._run_out(child)
            if self._stopping:
                return
            child.exits.append(status)
            delay = child.spec.restart_delay
            if killed:
                self._say(
                    f"  ~~  {child.spec.name} killed on purpose (SIGKILL, like a crashed pod); "
                    f"restarting it in {delay:g} s"
                )
            elif status == PLANNED_EXIT_STATUS:
                self._say(
                    f"  ~~  {child.spec.name} exited on purpose (status {status}); "
                    f"restarting it in {delay:g} s"
                )
            elif status in NO_RESTART_STATUSES:
                child.given_up = True
                self._say(
                    f"  !!  {child.spec.name} exited with status {status} and will not be "
                    f"restarted; the end of its log ({child.log_path}):\n{tail(child.log_path)}"
                )
                return
            else:
                child.failures += 1
                delay = min(delay * 2 ** (child.failures - 1), 60.0)
                self._say(
                    f"  !!  {child.spec.name} exited unexpectedly (status {status}); restarting "
                    f"in {delay:g} s; the end of its log ({child.log_path}):\n"
                    f"{tail(child.log_path)}"
                )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._spawn(child)
            try:
                await self._await_ready(child, time.monotonic() + 60.0)
            except StartupError as error:
                self._say(f"  !!  {error}")

    async def _run_out(self, child: _Child) -> tuple[int, bool]:
        """Wait until `child` exits, killing it after `kill_after`: (its status, killed)."""
        process = child.process
        assert process is not None
        kill_after = child.spec.kill_after
        if kill_after is None:
            return await process.wait(), False
        try:
            return await asyncio.wait_for(process.wait(), kill_after), False
        except TimeoutError:
            _signal_group(child, signal.SIGKILL)
            return await process.wait(), True

    async def stop(self) -> list[str]:
        """Stop every child, in the reverse order of the `start()` calls that started them.

        Each batch gets SIGTERM (to every process group) and SIGKILL after the stop timeout;
        so clients (the gateway) go before their servers (the aggregator, then the services)
        and nobody waits on a peer that is going away. Returns the names of the children that
        had to be killed. A second call is harmless.
        """
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers.clear()
        killed: list[str] = []
        for batch in reversed(self._batches):
            killed += await self._stop_batch(batch)
        for child in self._children.values():
            # Anything left in a group (a grandchild) goes too.
            _signal_group(child, signal.SIGKILL)
        return killed

    async def _stop_batch(self, batch: list[_Child]) -> list[str]:
        running = [
            child
            for child in batch
            if child.process is not None and child.process.returncode is None
        ]
        for child in running:
            _signal_group(child, signal.SIGTERM)
        killed: list[str] = []
        deadline = time.monotonic() + self._stop_timeout

        async def wait_or_kill(child: _Child) -> None:
            process = child.process
            assert process is not None
            try:
                await asyncio.wait_for(process.wait(), max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                killed.append(child.spec.name)
                _signal_group(child, signal.SIGKILL)
                await process.wait()

        await asyncio.gather(*(wait_or_kill(child) for child in running))
        return killed


def _signal_group(child: _Child, signum: int) -> None:
    process = child.process
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
