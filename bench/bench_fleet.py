"""Reload of a 1000-service registry: how much event-loop time applying it costs.

python -m bench fleet
An in-process aggregator watching a mesh file of 1000 services (agents on ports nobody
listens on: the calls fail at once, as a fleet being deployed would), rounds on demand only.
Each case, best of 5: the mesh file rewritten, `Fleet.reload()` (the file read and parsed
off the event loop, merged and handed to the round loop), then the next round, which
replaces the targets (opens the added services' channels, closes the removed ones) before
calling them. "Loop time" is the CPU the event loop's thread spent on the reload plus on
that replacement; calling the added services is a round's work, not the reload's. The
baseline, measured in the same run: one round calling the same 1000 services (no backoff).
The longest stall is the most a 1 ms ticker was late during the reload. Target: <= 50 ms
of loop time. Also the check the fleet makes every interval when nothing changed (a stat of
the file, no merge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry, load_config

COUNT = 1000
TARGET_MS = 50.0
REPEATS = 5
SETTINGS_TEXT = "[aggregator]\nport = 0\ninterval_seconds = 60\ndeadline_seconds = 0.5\n\n"
"""Rounds and checks every 60 s: within a case only the bench reloads and calls rounds."""


def entries(first: int, count: int = COUNT) -> list[ServiceEntry]:
    """`count` services named after their index, agents on 127.0.0.1:20000+index (closed)."""
    return [
        ServiceEntry(f"svc-{i}", "127.0.0.1", 10000 + i % 50000, 20000 + i, "core")
        for i in range(first, first + count)
    ]


def mesh_text(services: Sequence[ServiceEntry]) -> str:
    """The mesh file of `services`."""
    tables = (
        f'[[services]]\nname = "{e.name}"\nport = {e.port}\nagent_port = {e.agent_port}\n'
        f'type = "{e.type}"\n'
        for e in services
    )
    return SETTINGS_TEXT + "\n".join(tables)


class Stalls:
    """A 1 ms ticker; `worst` is the most it was late since `reset()`."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)

    def reset(self) -> None:
        self.worst = 0.0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Stalls]:
        self._task = asyncio.create_task(self._tick())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def loop_cpu(action: Callable[[], Awaitable[object]]) -> float:
    """Seconds of this thread's CPU while `action` runs (the loop's: files read elsewhere)."""
    started = time.thread_time()
    await action()
    return time.thread_time() - started


def timed_replacement(server: AggregatorServer) -> list[float]:
    """Record the loop CPU of each target replacement inside a round (the channels opened
    and closed); the bench reaches into the round loop's targets for this figure only."""
    targets = server.loop._targets
    replace = targets.replace
    spent: list[float] = []

    async def timed(registry: Registry) -> None:
        started = time.thread_time()
        await replace(registry)
        spent.append(time.thread_time() - started)

    targets.replace = timed  # type: ignore[method-assign]
    return spent


async def measure(
    server: AggregatorServer, path: Path, cases: dict[str, list[ServiceEntry]]
) -> None:
    loop = server.loop
    base = entries(0)
    rounds = []
    for _ in range(REPEATS):
        rounds.append(await loop_cpu(lambda: loop.snapshot(max_age=0)))
    baseline = min(rounds)
    print(f"  baseline, one round calling the {COUNT} services: {baseline * 1e3:7.2f} ms loop CPU")
    checks = []
    for _ in range(REPEATS):
        checks.append(await loop_cpu(server.fleet.refresh))
    print(
        f"  the check every interval, nothing changed: {min(checks) * 1e3:7.3f} ms loop CPU "
        f"(x{min(checks) / baseline:.4f} of a round)"
    )
    replacements = timed_replacement(server)
    async with Stalls().running() as stalls:
        for name, services in cases.items():
            costs, parts, walls, worst = [], [], [], []
            for _ in range(REPEATS):
                path.write_text(mesh_text(base))
                await server.fleet.reload()
                await loop.snapshot(max_age=0)
                path.write_text(mesh_text(services))
                stalls.reset()
                started = time.perf_counter()
                reload_cpu = await loop_cpu(server.fleet.reload)
                walls.append(time.perf_counter() - started)
                worst.append(stalls.worst)
                replacements.clear()
                await loop.snapshot(max_age=0)
                replace_cpu = sum(replacements)
                costs.append(reload_cpu + replace_cpu)
                parts.append((reload_cpu, replace_cpu))
                assert server.registry.names == tuple(s.name for s in services), name
            best = min(costs)
            reload_cpu, replace_cpu = parts[costs.index(best)]
            verdict = "ok" if best * 1e3 <= TARGET_MS else "MISSED"
            print(
                f"  {name:28s} loop time {best * 1e3:6.2f} ms = reload {reload_cpu * 1e3:.2f} + "
                f"targets {replace_cpu * 1e3:.2f} (x{best / baseline:.3f} of a round); reload wall "
                f"{min(walls) * 1e3:5.1f} ms, longest stall {min(worst) * 1e3:4.1f} ms  "
                f"target <= {TARGET_MS:g} ms: {verdict}"
            )


async def run() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        path = Path(folder) / "mesh.toml"
        base = entries(0)
        path.write_text(mesh_text(base))
        config = load_config(path)
        settings = AggregatorSettings(
            port=0,
            interval_seconds=60,
            deadline_seconds=0.5,
            backoff_max_seconds=0,  # every round calls every agent, the baseline's too
            min_round_spacing_seconds=0,  # every round asked for runs
        )
        cases = {
            "nothing changed (a re-read)": base,
            "an edit: 1 added, 1 removed": [*base[1:], *entries(COUNT, 1)],
            "every service replaced": entries(COUNT),
        }
        async with AggregatorServer(
            config.services, settings, config_path=path, interval_rounds=False
        ) as server:
            await measure(server, path, cases)


def main() -> None:
    logging.getLogger("aggregator").setLevel(logging.ERROR)  # 1000 status changes per case
    print(
        f"reload of a {COUNT}-service registry (event-loop CPU beyond a plain round, best of "
        f"{REPEATS}; a shared machine: compare with the baseline of the same run):"
    )
    asyncio.run(run())


if __name__ == "__main__":
    main()
