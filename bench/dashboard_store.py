"""A dashboard over a filled history: a simulated past for 15 services, then the real parts.

`fill_store(path, days)` writes `days` of the synthetic fleet of `bench_history` (15 services
x 3 timed kinds at the demo's rates, swinging over the day, Poisson arrivals, log-normal
durations) ending now: one
round a minute until the last hour, then one a second (what the 1 s tier holds for the short
ranges; a 1 m sample holds exactly what 60 1 s samples would, so the coarse tiers are the same
as a day of 1 s rounds would give). `filled_dashboard(path)` then serves it: 15 real agents
named as the stored services (a light load), a real aggregator with its history on that file,
the real gateway; it yields the gateway's URL (`dashboard_process(path)` runs it in a process
of its own, apart from a browser's driver). Used by `bench_dashboard_history` and for the
dashboard's screenshots at 24 h and 7 d:

    python -m bench.dashboard_store 24h.png 7d.png   # fill 7 days, screenshot both ranges
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from aggregator._history import HistorySettings
from bench.bench_history import _recorder, _synthetic_fleet, _synthetic_round
from gateway import GatewaySettings
from tests.gateway_mesh import serve_gateway
from tests.history_mesh import fake_clocks, tick

SERVICES = [f"svc-{index}" for index in range(15)]
"""The stored services' names (bench_history's synthetic fleet)."""
FINE_SECONDS = 3600
"""The last hour is written one round a second."""
DAILY_SWING = 0.6
"""The rates follow the day: +-60 % around bench_history's, highest at 06:00 UTC."""


def fill_store(path: Path, days: float, seed: int = 11) -> int:
    """`days` of the synthetic fleet ending now, written to a new store at `path`.

    Returns the rounds written. One round a minute, then one a second for the last hour.
    """
    rng = random.Random(seed)
    fleet = _synthetic_fleet(rng)
    end = math.floor(time.time())
    span = round(days * 86400)
    monotonic, wall, _ = fake_clocks(float(end - span))
    recorder, _ = _recorder(str(path.parent), monotonic)
    assert path.name == "history.sqlite3", "bench_history's recorder names the file"
    base = [[kind.rate for kind in kinds] for kinds in fleet]
    rounds = 0
    while wall() < end:
        gap = 1.0 if end - wall() <= FINE_SECONDS else 60.0
        tick(monotonic, wall, gap)
        daily = 1.0 + DAILY_SWING * math.sin(2 * math.pi * (wall() % 86400) / 86400)
        for kinds, rates in zip(fleet, base, strict=True):
            for kind, rate in zip(kinds, rates, strict=True):
                kind.rate = rate * daily
        recorder.record(_synthetic_round(fleet, wall(), gap, rng))
        rounds += 1
    assert recorder.degraded == "" and recorder.dropped == 0
    recorder.finish()
    return rounds


async def _light_load(trackers: list[EventTracker], stop: asyncio.Event) -> None:
    rng = random.Random(5)
    while not stop.is_set():
        for each in trackers:
            for kind, seconds in (("message", 0.004), ("api_call", 0.02)):
                duration = seconds * rng.lognormvariate(0.0, 0.5)
                each.observe(kind, duration, error=rng.random() < 0.01)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


@contextlib.asynccontextmanager
async def filled_dashboard(path: Path) -> AsyncIterator[str]:
    """The real agents, aggregator (history on `path`) and gateway; yields the gateway's URL."""
    trackers = [EventTracker(name) for name in SERVICES]
    agents = [AgentServer(each, grace_seconds=0) for each in trackers]
    ports = [await agent.start() for agent in agents]
    registry = Registry(
        ServiceEntry(name, "127.0.0.1", 20000 + index, port, "core")
        for index, (name, port) in enumerate(zip(SERVICES, ports, strict=True))
    )
    stop = asyncio.Event()
    load = asyncio.create_task(_light_load(trackers, stop))
    settings = AggregatorSettings(port=0, interval_seconds=1.0, deadline_seconds=0.5)
    try:
        async with AggregatorServer(
            registry, settings, history=HistorySettings(path=str(path))
        ) as aggregator:
            gateway = GatewaySettings(aggregator=aggregator.address)
            async with serve_gateway(gateway) as (_, port):
                yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await load
        await asyncio.gather(*(agent.stop(0) for agent in agents))


async def _serve(path: Path, conn: Connection) -> None:
    async with filled_dashboard(path) as url:
        conn.send(url)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)


def _serve_process(path: Path, conn: Connection) -> None:
    asyncio.run(_serve(path, conn))


@contextlib.contextmanager
def dashboard_process(path: Path) -> Iterator[str]:
    """`filled_dashboard(path)` in a process of its own (not the browser driver's); its URL."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_process, args=(path, child), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the dashboard's process did not start within 60 s")
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(20)
        if process.is_alive():
            process.kill()


async def _screenshots(files: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "history.sqlite3"
        started = time.perf_counter()
        rounds = fill_store(path, 7.0)
        print(f"filled 7 days ({rounds} rounds) in {time.perf_counter() - started:.1f} s")
        with dashboard_process(path) as url:
            await _shoot(url, files)


async def _shoot(url: str, files: list[str]) -> None:
    from tests.browser import open_page

    async with open_page(url + "/") as page:
        for key, file in zip(("24h", "7d"), files, strict=False):
            await page.locator(f'#range button[data-range="{key}"]').click()
            await page.locator(f'#sys-spark[data-drawn="{key}"]').wait_for(timeout=30000)
            await page.screenshot(path=file, full_page=True)
            print(f"{key}: {file}")


if __name__ == "__main__":
    asyncio.run(_screenshots(sys.argv[1:] or ["dashboard-24h.png", "dashboard-7d.png"]))
