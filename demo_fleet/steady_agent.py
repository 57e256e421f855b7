"""A bare agent in its own process, recording a steady stream of events: for faults and soaks.

`python -m demo_fleet.steady_agent NAME PORT [--per-tick N]` serves one `AgentServer` for a
tracker named NAME on 127.0.0.1:PORT, records N events every 50 ms and prints `ready` once it
listens. `SteadyAgent` starts one such process and can kill it, signal it (SIGSTOP/SIGCONT)
and start it again on the same port, as the fault tests and the soak benchmark do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from agent import AgentServer, EventTracker
from demo_fleet.errors import StartupError

TICK_SECONDS = 0.05
"""How often the agent records its events."""


async def serve(name: str, port: int, per_tick: int) -> None:
    """Serve the agent and record `per_tick` events every tick, until cancelled."""
    tracker = EventTracker(name)
    server = AgentServer(tracker, port=port, grace_seconds=0)
    await server.start()
    print("ready", flush=True)
    while True:
        tracker.record(n=per_tick)
        await asyncio.sleep(TICK_SECONDS)


@dataclass
class SteadyAgent:
    """One steady agent process on a fixed port, so that it can come back on that port."""

    name: str
    port: int
    per_tick: int = 5
    process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the process and wait until its agent listens."""
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "demo_fleet.steady_agent",
                self.name, str(self.port), "--per-tick", str(self.per_tick),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.kill()
            raise StartupError(f"steady agent {self.name} on port {self.port} did not start")

    def signal(self, signum: int) -> None:
        """Send `signum` to the process (SIGSTOP freezes it, SIGCONT thaws it)."""
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """Kill the process (thawed first if it was stopped) and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def main(argv: list[str] | None = None) -> None:
    """The command line: NAME PORT [--per-tick N]."""
    parser = argparse.ArgumentParser(
        prog="python -m demo_fleet.steady_agent", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", help="the tracker's (service's) name")
    parser.add_argument("port", type=int, help="the agent's gRPC port on 127.0.0.1")
    parser.add_argument("--per-tick", type=int, default=5, help="events recorded every 50 ms")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.name, args.port, args.per_tick))


if __name__ == "__main__":
    main()
