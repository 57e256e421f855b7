"""`metrics-mesh top` in a real terminal 80 columns wide (tmux), against a real aggregator.

Keys change the order of the rows, the footer marks the current one, `q` quits with status
0 and gives the terminal back as it was, and no line on screen is longer than 80 columns.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from demo_fleet.ports import free_ports
from tests.cli import METRICS_MESH, needs_cli
from tests.eventually import eventually

WIDTH, HEIGHT = 80, 30
pytestmark = [
    needs_cli,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

# name, type, events, failed, seconds per event: every order below is a different one.
WORKLOADS = (
    ("busy-ingest", "core", 500, 0, 0.002),
    ("quiet-admin", "core", 3, 2, 0.005),
    ("weather-feed", "data", 40, 10, 0.020),
    ("slow-ai", "ai", 20, 0, 0.400),
)
ORDERS = {
    "r": ["busy-ingest", "weather-feed", "slow-ai", "quiet-admin", "gone-service"],
    "e": ["quiet-admin", "weather-feed", "busy-ingest", "slow-ai", "gone-service"],
    "l": ["slow-ai", "weather-feed", "quiet-admin", "busy-ingest", "gone-service"],
    "n": ["busy-ingest", "gone-service", "quiet-admin", "slow-ai", "weather-feed"],
}
"""The rows' order after each key: active first (but by name), biggest figure first."""
MARKS = {"r": "r rate▼", "e": "e errors▼", "l": "l p99▼", "n": "n name▲"}


@pytest.fixture
async def aggregator() -> AsyncIterator[str]:
    """Four agents with distinct rates, error rates and latencies, one dead; the address."""
    agents: list[AgentServer] = []
    entries: list[ServiceEntry] = []
    for index, (name, type_, events, failed, seconds) in enumerate(WORKLOADS):
        tracker = EventTracker(name)
        counter = tracker.counter("work")
        for event in range(events):
            counter.observe(seconds, error=event < failed)
        agent = AgentServer(tracker)
        await agent.start()
        agents.append(agent)
        entries.append(ServiceEntry(name, "127.0.0.1", 8001 + index, agent.port, type_))
    (dead_port,) = free_ports(1)
    entries.append(ServiceEntry("gone-service", "127.0.0.1", 8099, dead_port, "analysis"))
    settings = AggregatorSettings(port=0, interval_seconds=0.5, deadline_seconds=0.4)
    server = AggregatorServer(Registry(entries), settings)
    await server.start()
    try:
        yield server.address
    finally:
        await server.stop(0)
        for agent in agents:
            await agent.stop(0)


@dataclass
class Pane:
    """One tmux server of its own with one 80x30 pane running a shell command."""

    socket: str

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout

    async def start(self, command: str) -> None:
        size = ["-x", str(WIDTH), "-y", str(HEIGHT)]
        await asyncio.to_thread(self.tmux, "new-session", "-d", *size, "-s", "top", command)

    async def screen(self) -> str:
        return await asyncio.to_thread(self.tmux, "capture-pane", "-p", "-t", "top")

    async def press(self, key: str) -> None:
        await asyncio.to_thread(self.tmux, "send-keys", "-t", "top", key)

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def pane(request: pytest.FixtureRequest) -> Iterator[Pane]:
    made = Pane(f"mm-top80-{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**6}")
    yield made
    made.stop()


def top_command(*args: str) -> str:
    """top in the pane (its real size, not COLUMNS/LINES from here), then its exit status and
    the terminal's line discipline once it is gone (icanon and echo are back on: restored)."""
    return (
        f"trap '' INT; env -u COLUMNS -u LINES {METRICS_MESH} top {' '.join(args)}; "
        'echo "top exited with status $?"; '
        "echo \"tty: $(stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon -e echo -e -echo "
        "| tr '\\n' ' ')\"; sleep 60"
    )


def rows(screen: str) -> list[str]:
    """The service names of the table's rows, top to bottom."""
    return [line.split("│")[1].strip() for line in screen.splitlines() if line.startswith("│ ")]


def too_wide(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if len(line) > WIDTH]


def showing(pane: Pane, key: str, seen: list[str]) -> Callable[[], Awaitable[str | None]]:
    """A probe: the screen once the footer marks `key`'s order and the rows are in it."""

    async def probe() -> str | None:
        text = await pane.screen()
        seen.extend(too_wide(text))
        return text if MARKS[key] in text and rows(text) == ORDERS[key] else None

    return probe


def exited(pane: Pane) -> Callable[[], Awaitable[str | None]]:
    """A probe: the screen once top is gone and the shell said how (status, tty modes)."""

    async def probe() -> str | None:
        text = await pane.screen()
        return text if "top exited with status" in text and "tty: " in text else None

    return probe


async def test_keys_sort_the_rows_and_q_quits_at_80_columns(aggregator: str, pane: Pane) -> None:
    await pane.start(top_command("--aggregator", aggregator))
    wide: list[str] = []
    first = await eventually(showing(pane, "r", wide), timeout=20, what="top sorted by rate")
    footer = next(line for line in first.splitlines() if line.startswith("sort: "))
    assert footer.startswith("sort: r rate▼ · e errors · l p99 · n name · q quits │ all services")
    for key in ("e", "l", "n", "r"):
        await pane.press(key)
        shown = await eventually(showing(pane, key, wide), timeout=10, what=f"order {key!r}")
        assert shown.count("snapshot #") == 1  # redrawn in place
        for other in set(MARKS) - {key}:
            assert MARKS[other] not in shown  # only the current order is marked
    await pane.press("q")

    final = await eventually(exited(pane), timeout=10, what="top to quit on q")
    assert "top exited with status 0" in final
    assert "tty: icanon echo" in final  # the terminal is back in its normal mode
    assert rows(final) == ORDERS["r"]  # the last frame stays on screen
    assert wide == [] and too_wide(final) == []


async def test_the_header_and_footer_name_the_filters(aggregator: str, pane: Pane) -> None:
    await pane.start(top_command("--aggregator", aggregator, "--type", "core", "--interval", "1"))

    async def filtered() -> str | None:
        text = await pane.screen()
        return text if sorted(rows(text)) == ["busy-ingest", "quiet-admin"] else None

    shown = await eventually(filtered, timeout=20, what="the core services only")
    header = shown.splitlines()[0]
    assert header.startswith(f"top {aggregator} · 2 of 5: type=core · every 1s · ALERTS")
    footer = next(line for line in shown.splitlines() if line.startswith("sort: "))
    assert footer.endswith("│ 2 of 5: type=core")
    assert too_wide(shown) == []
    await pane.press("C-c")  # Ctrl-C quits as cleanly as q

    final = await eventually(exited(pane), timeout=10, what="top to quit on Ctrl-C")
    assert "top exited with status 0" in final and "tty: icanon echo" in final


@pytest.fixture
async def replicated() -> AsyncIterator[tuple[str, list[str]]]:
    """`cart` of three instances (the last one dead) beside `busy-ingest`; the address and
    the instances' addresses."""
    agents: list[AgentServer] = []
    for events in (30, 12):
        tracker = EventTracker("cart")
        tracker.record("checkout", n=events)
        agents.append(AgentServer(tracker))
    single = EventTracker("busy-ingest")
    single.record(n=500)
    agents.append(AgentServer(single))
    for agent in agents:
        await agent.start()
    (dead_port,) = free_ports(1)
    addresses = [f"127.0.0.1:{agent.port}" for agent in agents[:2]] + [f"127.0.0.1:{dead_port}"]
    entries = [
        ServiceEntry("cart", "127.0.0.1", 8001, agents[0].port, "core", instances=tuple(addresses)),
        ServiceEntry("busy-ingest", "127.0.0.1", 8002, agents[2].port, "core"),
    ]
    settings = AggregatorSettings(port=0, interval_seconds=0.5, deadline_seconds=0.4)
    server = AggregatorServer(Registry(entries), settings)
    await server.start()
    try:
        yield server.address, addresses
    finally:
        await server.stop(0)
        for agent in agents:
            await agent.stop(0)


async def test_i_shows_each_instance_under_its_service_and_hides_them_again(
    replicated: tuple[str, list[str]], pane: Pane
) -> None:
    aggregator, addresses = replicated
    await pane.start(top_command("--aggregator", aggregator))

    async def table(expected: list[str]) -> Callable[[], Awaitable[str | None]]:
        async def probe() -> str | None:
            text = await pane.screen()
            return text if rows(text) == expected else None

        return probe

    both = ["busy-ingest", "cart"]
    first = await eventually(await table(both), timeout=20, what="the two services")
    footer = next(line for line in first.splitlines() if line.startswith("sort: "))
    assert "· i instances · q quits" in footer
    await pane.press("i")
    lines = ["busy-ingest", "cart", *(f"└ {address}" for address in addresses)]
    shown = await eventually(await table(lines), timeout=10, what="a line per instance")
    cells = {
        parts[1]: parts[3:5]
        for parts in ([cell.strip() for cell in line.split("│")] for line in shown.splitlines())
        if len(parts) > 5
    }
    assert cells["cart"][0] == "active 2/3"  # k of n in the service's status
    first, second, dead = (cells[f"└ {address}"] for address in addresses)
    assert (first[0], second[0], dead) == ("active", "active", ["inactive", "-"])
    rates = [float(each[1].replace(",", "")) for each in (first, second)]  # 1,234 at the start
    assert rates[0] > rates[1]  # 30 events against 12, in the same time
    assert too_wide(shown) == []
    await pane.press("i")
    await eventually(await table(both), timeout=10, what="the instance lines gone again")
    await pane.press("q")
    final = await eventually(exited(pane), timeout=10, what="top to quit on q")
    assert "top exited with status 0" in final
