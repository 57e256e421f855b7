"""The history survives the aggregator: a restart finds all of it, a kill -9 loses at most 2 s.

The first test stops and starts a real aggregator on the same store under a fake clock; the
second runs `python -m aggregator` as a user does, kills it with SIGKILL, and reads the store.
Both run on each backend (a SQLite file, a PostgreSQL database).
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

import grpc
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc

from agent import EventTracker
from aggregator._history import SeriesKey, parse_tiers
from aggregator._history.memory import OpenChunks
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.samples import time_ms_of
from aggregator._history.tiers import DEFAULT_TIERS
from tests.history_backends import HistoryBackend
from tests.history_mesh import (
    agents,
    fake_clocks,
    history_server,
    registry_of,
    run_round,
    stored_events,
    tick,
    tracker,
    writer_of,
)

API = SeriesKey("orders-api", "api_call")
SERVICE = SeriesKey("orders-api", "")
TIERS = parse_tiers(DEFAULT_TIERS)
EVERYTHING = (-(2**62), 2**62)


async def test_after_a_restart_the_history_before_it_is_all_there(
    history_backend: HistoryBackend,
) -> None:

    monotonic, wall, clocks = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    async with agents([orders]) as servers:
        registry = registry_of(servers)
        async with history_server(registry, history_backend, clocks) as server:
            for number in range(200):  # 3 min 20 s: one seal, a head after it
                tick(monotonic, wall, 1.0)
                orders.observe("api_call", 0.001 * (1 + number % 50), error=number % 7 == 0)
                await run_round(server)
            reader = writer_of(server).reader
            before = {tier.text: reader.read([API, SERVICE], tier, *EVERYTHING) for tier in TIERS}
        assert len(before["1s:24h"][SERVICE]) == 200
        tick(monotonic, wall, 30.0)
        orders.observe("api_call", 0.5)
        async with history_server(registry, history_backend, clocks) as server:
            writer = writer_of(server)
            await writer.flush()
            after = {
                tier.text: writer.reader.read([API, SERVICE], tier, *EVERYTHING) for tier in TIERS
            }
            assert after == before  # every tier, sealed or not, as it was
            for _ in range(10):
                tick(monotonic, wall, 1.0)
                orders.record("api_call")
                await run_round(server)
            # The cursors came back exactly: nothing counted twice, nothing missed.
            for tier in TIERS:
                assert stored_events(writer, API, tier) == 211, tier.text


def config_file(tmp_path: Path, backend: HistoryBackend, agent_port: int) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(
        "\n".join(
            [
                "[aggregator]",
                "interval_seconds = 0.2",
                "deadline_seconds = 0.15",
                "[alerts]",
                f'state_dir = "{tmp_path}"',
                "[history]",
                backend.toml(),
                "[[services]]",
                'name = "orders-api"',
                "port = 9000",
                f"agent_port = {agent_port}",
                'type = "core"',
            ]
        ),
        encoding="utf-8",
    )
    return path


async def start_aggregator(config: Path) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aggregator", "--config", str(config), "--port", "0",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        assert line, "the aggregator ended before serving"
        match = re.search(r"aggregator serving on (\S+)", line)
        if match:
            return process, match.group(1)


async def take_times(address: str, count: int, until: EventTracker | None = None) -> list[int]:
    """The take times (ms) of `count` streamed snapshots (or until one shows every event)."""
    seen: list[int] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        async for message in stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest()):
            snapshot = message.snapshot
            seen.append(time_ms_of(snapshot.take_time))
            if until is not None:
                if snapshot.services[0].total_events == until.read().total_events:
                    return seen
            elif len(seen) >= count:
                return seen
    raise AssertionError("the stream ended")


def read_history(backend: HistoryBackend) -> tuple[list[int], int]:
    """The stored round times of the service and the events stored for its kind."""
    memory = OpenChunks(TIERS)
    recorder = Recorder(backend.opener(), memory, buffer_rounds=10, monotonic=time.monotonic)
    recorder.open()
    try:
        assert recorder.degraded == ""
        reader = HistoryReader(memory)
        found = reader.read([SERVICE, API], TIERS[0], *EVERYTHING)
        rounds = [sample.time_ms for sample in found[SERVICE]]
        return rounds, sum(getattr(sample, "events", 0) for sample in found.get(API, []))
    finally:
        recorder.finish()


async def test_kill_9_loses_at_most_the_last_two_seconds_of_rounds(
    tmp_path: Path, history_backend: HistoryBackend
) -> None:
    orders = EventTracker("orders-api")
    async with agents([orders]) as servers:
        config = config_file(tmp_path, history_backend, servers[0].port)
        process, address = await start_aggregator(config)
        try:
            orders.record("api_call", n=5)
            streamed = await take_times(address, 25)
            orders.record("api_call", n=7)
            streamed += await take_times(address, 5)
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        assert process.returncode == -signal.SIGKILL
        rounds, _ = read_history(history_backend)
        newest = max(streamed)
        missing = [t for t in streamed if t not in set(rounds)]
        assert all(newest - t < 2000 for t in missing), (missing, newest)
        assert len(rounds) >= len(streamed) - 10
        # Started again, it counts on from what the file kept: every event exactly once.
        process, address = await start_aggregator(config)
        try:
            orders.record("api_call", n=11)
            await take_times(address, 0, until=orders)
        finally:
            process.send_signal(signal.SIGTERM)
            await process.wait()
        assert process.returncode == 0
    rounds_after, events = read_history(history_backend)
    assert events == orders.read().total_events == 23
    assert rounds_after[: len(rounds)] == rounds
