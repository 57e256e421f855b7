"""The gateway's snapshot ring: memory per kept snapshot, and the cost of replaying it.

A real fleet (15 agents with 3 timed kinds each, a real aggregator) gives one realistic
snapshot; the ring is then filled with 300 parsed copies of it, each served once as the
latest (its REST body built), as the hub does. Baseline in the same run: the same ring with
nothing compacted (what the gateway kept before). Then the dashboard's replay of its trend
fields over the whole ring, compacted vs not. Last, the SSE frames of the clients streaming
while the ring fills: dropped at compaction vs kept (what the gateway did before).

    python -m bench gateway_history
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
import time
import tracemalloc
from functools import partial

from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from agent import AgentServer, EventTracker
from aggregator import DEFAULT_REGISTRY, AggregatorServer, AggregatorSettings, Registry
from gateway._sse import frame
from gateway._views import SnapshotEntry
from mesh_common.transport import open_channel
from mesh_common.views import WHOLE, View, make_view

ENTRIES = 300
TREND_FIELDS = ("events_per_second", "error_rate", "latency_p95_ms")


def rss_bytes() -> int:
    """The process's resident set size."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def realistic_snapshot() -> bytes:
    """One serialized snapshot of 15 services with 3 timed kinds each."""
    rng = random.Random(7)
    agents = []
    entries = []
    for entry in DEFAULT_REGISTRY:
        tracker = EventTracker(entry.name)
        for kind in ("request", "query", "job"):
            for _ in range(2000):
                tracker.observe(kind, rng.lognormvariate(-3, 1.2), error=rng.random() < 0.02)
        agent = AgentServer(tracker)
        await agent.start()
        agents.append(agent)
        entries.append(dataclasses.replace(entry, host="127.0.0.1", agent_port=agent.port))
    settings = AggregatorSettings(port=0, interval_seconds=0.5, deadline_seconds=0.4)
    try:
        async with (
            AggregatorServer(Registry(entries), settings) as server,
            open_channel(server.address) as channel,
        ):
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            while True:
                answer = await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest())
                if answer.snapshot.active_count == len(entries):
                    return bytes(answer.snapshot.SerializeToString())
                await asyncio.sleep(0.2)
    finally:
        for agent in agents:
            await agent.stop(0)


def streamed_views(count: int) -> list[View]:
    """The whole view (a dashboard) and `count - 1` SSE clients filtered each another way."""
    names = [entry.name for entry in DEFAULT_REGISTRY]
    views = [WHOLE]
    for index in range(count - 1):
        views.append(make_view(names[index : index + 3], (), (), known_services=None))
    return views


def fill_ring(data: bytes, compact: bool) -> tuple[list[SnapshotEntry], float]:
    """ENTRIES entries, each served once as the latest; bytes of RSS per entry."""
    gc.collect()
    before = rss_bytes()
    ring: list[SnapshotEntry] = []
    for _ in range(ENTRIES):
        entry = SnapshotEntry(snapshot_pb2.Snapshot.FromString(data), 0.0)
        entry.body(WHOLE, 0.0)
        if compact and ring:
            ring[-1].compact()
        ring.append(entry)
    gc.collect()
    return ring, (rss_bytes() - before) / ENTRIES


def frames_kept(data: bytes, views: list[View], keep_frames: bool) -> float:
    """Python bytes held per compacted entry once each latest entry streamed `views`.

    Measured with tracemalloc (the frames are Python bytes). `keep_frames` holds on to the
    frames after compaction, as the gateway did before it dropped them: the baseline.
    """
    ring: list[SnapshotEntry] = []
    kept: list[bytes] = []
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(ENTRIES):
            entry = SnapshotEntry(snapshot_pb2.Snapshot.FromString(data), 0.0)
            entry.body(WHOLE, 0.0)
            for view in views:
                built = entry.cached(view, partial(frame, entry, view, 0.0))
                if keep_frames:
                    kept.append(built)
            if ring:
                ring[-1].compact()
            ring.append(entry)
        ring[-1].compact()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    return held / ENTRIES


def replay_seconds(ring: list[SnapshotEntry]) -> float:
    """Seconds to build the dashboard's trend body of every entry (its replay at load)."""
    view = make_view((), (), TREND_FIELDS, known_services=None)
    started = time.perf_counter()
    for entry in ring:
        entry.body(view, 0.0)
    return time.perf_counter() - started


def main() -> None:
    """Print memory per kept snapshot and replay time, compacted vs the full baseline."""
    data = asyncio.run(realistic_snapshot())
    print(f"one snapshot: {len(data):,} bytes serialized (15 services x 3 timed kinds)")
    results = {}
    for compact in (True, False):  # compacted first: the full ring's freed memory would hide it
        ring, per_entry = fill_ring(data, compact)
        results[compact] = (per_entry, replay_seconds(ring))
        del ring
        gc.collect()
    (full, full_replay), (small, small_replay) = results[False], results[True]
    print(f"RSS per kept snapshot: full {full / 1024:,.0f} KB, compacted {small / 1024:,.0f} KB")
    print(f"  ratio compacted/full: {small / full:.2f}x")
    for size in (600, 900):
        print(f"  a ring of {size}: full {full * size / 2**20:,.0f} MB, ", end="")
        print(f"compacted {small * size / 2**20:,.0f} MB")
    print(f"trend replay of {ENTRIES} snapshots (first time, nothing cached):")
    print(f"  full {full_replay * 1000:.0f} ms, compacted {small_replay * 1000:.0f} ms", end="")
    print(f" ({small_replay / full_replay:.2f}x)")

    print("SSE clients streaming while the ring fills (a frame per view on each latest entry):")
    for count in (1, 8):
        views = streamed_views(count)
        dropped = frames_kept(data, views, keep_frames=False)
        kept = frames_kept(data, views, keep_frames=True)
        print(
            f"  {count} view(s): Python memory per compacted snapshot {dropped / 1024:,.1f} KB"
            f" (frames dropped at compaction) vs {kept / 1024:,.1f} KB (kept, as before):"
            f" {(kept - dropped) * 900 / 2**20:,.1f} MB less for a ring of 900"
        )


if __name__ == "__main__":
    main()
