"""`metrics-mesh demo`: start the whole fleet, print where everything is, stop it all on Ctrl-C.

With `secure`, the run directory gets the demo's own certificates and secrets first
(`demo_fleet.secure`) and every process runs with them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TextIO

from aggregator import default_state_dir
from demo_fleet.banner import banner, counted
from demo_fleet.errors import PortTakenError, StartupError
from demo_fleet.plan import FleetPlan
from demo_fleet.ports import check_ports, port_is_free
from demo_fleet.secure import replaced_tables, write_credentials
from demo_fleet.supervisor import Supervisor
from demo_fleet.toml_out import dumps
from mesh_common.errors import exit_status
from metricsmesh_cli.certs import write_private

CONFIG_FILE_NAME = "metrics-mesh.toml"
HISTORY_FILE_NAME = "demo-history.sqlite3"
PORT_RELEASE_SECONDS = 3.0


def demo_history() -> Path:
    """The demo's history file, in the user's state directory: kept from one demo to the next."""
    return Path(default_state_dir()) / HISTORY_FILE_NAME


class DemoRun:
    """One run of the demo: ports checked, processes supervised, everything stopped at the end."""

    def __init__(self, plan: FleetPlan, run_dir: Path, out: TextIO) -> None:
        self.plan = plan
        self.run_dir = run_dir
        self._out = out
        self._stop = asyncio.Event()
        self.supervisor = Supervisor(
            run_dir, say=self.say, stop_timeout=plan.demo.stop_timeout_seconds
        )

    def say(self, line: str) -> None:
        """Print one progress line now."""
        print(line, file=self._out, flush=True)

    def request_stop(self) -> None:
        """Ask the run to stop (what SIGINT and SIGTERM do)."""
        self._stop.set()

    async def run(self) -> int:
        """Start everything, wait for a stop request, stop everything; the exit status."""
        plan = self.plan
        config_path = self.run_dir / CONFIG_FILE_NAME
        document = plan.config_document(state_dir=self.run_dir / "state", history=demo_history())
        write_private(config_path, dumps(document).encode())  # --secure: it holds secrets
        replaced = replaced_tables(plan.tables) if plan.credentials else []
        if replaced:
            verb = "replaces" if len(replaced) == 1 else "replace"
            self.say(f"--secure: the demo's own {' and '.join(replaced)} {verb} the file's")
        self.say(
            f"starting {counted(plan)} of the demo and the fake upstream (logs in {self.run_dir})"
        )
        started = time.monotonic()
        status = 0
        try:
            timeout = plan.demo.startup_timeout_seconds
            if not await self._until_stopped(
                self.supervisor.start(plan.service_specs(config_path), timeout=timeout)
            ):
                return 130
            self.say("starting the aggregator, then the gateway")
            for spec in plan.mesh_specs(config_path):
                if not await self._until_stopped(self.supervisor.start([spec], timeout=timeout)):
                    return 130
            pusher = plan.pusher_spec(config_path)
            if pusher is not None:
                self.say("starting the pusher (seed 003 metrics, seed 004 events, OTLP)")
                if not await self._until_stopped(self.supervisor.start([pusher], timeout=timeout)):
                    return 130
            self.say(f"everything is up in {time.monotonic() - started:.1f} s")
            self.say(banner(plan, config_path, self.run_dir))
            await self._stop.wait()
        except StartupError as error:
            print(f"metrics-mesh demo: {error}", file=sys.stderr, flush=True)
            status = 1
        finally:
            status = await self._shutdown() or status
        return status

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` unless a stop request comes first; True when `work` finished."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            stop.cancel()
            task.result()
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    async def _shutdown(self) -> int:
        pids = self.supervisor.pids()
        self.say(f"stopping {len(pids)} processes (gateway, aggregator, then the services) ...")
        started = time.monotonic()
        killed = await self.supervisor.stop()
        if killed:
            self.say(f"  killed after the stop timeout: {', '.join(killed)}")
        busy = await _ports_still_busy(self.plan, PORT_RELEASE_SECONDS)
        if busy:
            self.say(f"  these ports are still in use: {', '.join(busy)}")
            return 1
        self.say(
            f"stopped in {time.monotonic() - started:.1f} s; every port is free again "
            f"(logs kept in {self.run_dir})"
        )
        return 0


async def _ports_still_busy(plan: FleetPlan, within: float) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        busy = [
            f"{claim.port} ({claim.owner})"
            for claim in plan.claims()
            if not port_is_free(claim.host, claim.port)[0]
        ]
        if not busy or time.monotonic() > deadline:
            return busy
        await asyncio.sleep(0.1)


async def _run(plan: FleetPlan, run_dir: Path, out: TextIO) -> int:
    demo = DemoRun(plan, run_dir, out)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, demo.request_stop)
    return await demo.run()


def run_demo(
    plan: FleetPlan,
    *,
    run_dir: str | None = None,
    out: TextIO = sys.stdout,
    secure: bool = False,
) -> int:
    """Check the ports, run the fleet until SIGINT/SIGTERM; returns the exit status.

    With `secure`, mutual TLS and tokens everywhere, from credentials written into the run
    directory.
    """
    try:
        check_ports(plan.claims())
    except PortTakenError as error:
        print(f"metrics-mesh demo: {error}", file=sys.stderr)
        return exit_status(error)
    chosen = run_dir or plan.demo.run_dir
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="metrics-mesh-demo-"))
    if secure:
        plan = dataclasses.replace(plan, credentials=write_credentials(path))
    return asyncio.run(_run(plan, path, out))
