"""History store benchmarks: the aggregator's CPU with and without history, the writer's time
per round at 1000 services, the disk each tier takes, and the exactness of each tier.

python -m bench history                                   # all four parts (a few minutes)
python -m bench.bench_history cpu | writer | disk | exactness   # one part

1. cpu: one aggregator process, 15 busy agents (3 timed kinds each, in a worker process so
   their CPU is not the aggregator's), rounds back to back; process CPU per round (every
   thread: the history's worker too, its seals included) with history and without, in
   alternation in the same run. The wall clock the aggregator reads moves 1 s per round, so
   the history seals and rolls up as it does with 1 s rounds.
2. writer: the writer's worker (`Recorder.record`) on the wire snapshots of 1000 in-process
   trackers, per round (its seals amortized), for three workloads; and what the event loop
   pays (`HistoryWriter.observe`).
3. disk: a 15-service fleet with 3 timed kinds each (Poisson arrivals, log-normal durations,
   the demo's rates), simulated with a fake clock: 2 h of 1 s rounds for the 1 s tier, 7
   days of 60 s rounds for the 1 m and 5 m tiers (a 1 m sample holds exactly what 60 1 s
   samples would: the same events), each written through the same recorder, seal and rollup
   code. Bytes per stored number per tier, and the total for the default retention,
   extrapolated linearly in time (24 h / 2 h, 30 d / 3 d, 90 d / 3 d): chunks are
   stationary, and SQLite's own bytes (row headers, index entries, page slack) grow with the
   number of chunks; the write-ahead log and the free pages (the head's churn) do not.
4. exactness: 3 services x 3 timed kinds, real trackers, 2 h of 1 s rounds: rate, error rate
   and p50/p95/p99 read from each tier against the exact figures of the same events.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import pairwise
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from metricsmesh.v1 import snapshot_pb2

from aggregator import (
    AggregatorServer,
    AggregatorSettings,
    AlertSettings,
    Clocks,
    Registry,
    ServiceEntry,
)
from aggregator._alerts.rules import rule_from_table
from aggregator._convert import WholeSnapshots
from aggregator._history import (
    HistorySettings,
    HistoryWriter,
    KindSample,
    SeriesKey,
    Tier,
    evaluate_range,
    parse_tiers,
)
from aggregator._history.codec import decode_chunk
from aggregator._history.memory import OpenChunks
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.sqlite import SqliteStore
from aggregator._history.store import StoreOpener
from aggregator._history.tiers import DEFAULT_TIERS
from aggregator._model import SnapshotData
from mesh_common.latency import MAX_INDEX, MIN_INDEX, RELATIVE_ERROR, upper_bound
from mesh_common.wire_time import set_seconds
from tests.history_mesh import Workload, exact_windows, fake_clocks, tick, tracker, wire_snapshot

TIERS = parse_tiers(DEFAULT_TIERS, summary=True)
"""The default tiers and the hourly summary the store adds after them."""
TIMED_KINDS = ("api_call", "data_fetch", "inference")
PROMETHEUS_BYTES_PER_SAMPLE = 1.5
"""Prometheus TSDB's bytes per sample, the disk baseline (its documentation's 1-2 bytes)."""
TARGET_CPU_RATIO = 1.05
TARGET_WRITER_MS = 15.0
TARGET_TOTAL_MB = 300.0


# ---------------------------------------------------------------- 1. cpu


def _busy_worker(count: int, conn: Connection) -> None:
    asyncio.run(_host_busy(count, conn))


async def _host_busy(count: int, conn: Connection) -> None:
    """`count` agents whose 3 timed kinds each see ~300 events/s until told to stop."""
    from agent import AgentServer, EventTracker

    trackers = [EventTracker(f"svc-{index}") for index in range(count)]
    servers = [AgentServer(each, grace_seconds=0) for each in trackers]
    ports = [await server.start() for server in servers]
    stop = asyncio.Event()

    async def load() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            for each in trackers:
                for position, kind in enumerate(TIMED_KINDS):
                    for _ in range(3):
                        seconds = 0.002 * (1 + position) * rng.lognormvariate(0.0, 0.5)
                        each.observe(kind, seconds, error=rng.random() < 0.01)
            await asyncio.sleep(0.01)

    task = asyncio.get_running_loop().create_task(load())
    conn.send(ports)
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    stop.set()
    await task
    await asyncio.gather(*(server.stop(0) for server in servers))


@contextlib.contextmanager
def busy_fleet(count: int) -> Iterator[Registry]:
    """`count` busy agents in a worker process; yields the registry pointing at them."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_busy_worker, args=(count, child), daemon=True)
    process.start()
    try:
        ports = parent.recv()
        yield Registry(
            ServiceEntry(f"svc-{i}", "127.0.0.1", 20000 + i, port, "core")
            for i, port in enumerate(ports)
        )
    finally:
        parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


SERVICE_DOWN = {"name": "ServiceDown", "figure": "status", "comparator": "!=",
                "threshold": "active", "severity": "critical"}  # fmt: skip
"""The demo's first alert rule: with a rule, the round's wire message is built for the alerts
(as it is for the gateway's stream) and the history shares it."""


async def _cpu_per_round(
    registry: Registry, history: HistorySettings | None, rounds: int, alerts: AlertSettings
) -> tuple[float, int]:
    """Process CPU seconds per round (the history's worker included) and rounds dropped."""
    simulated = [0]
    clocks = Clocks(monotonic=time.monotonic, wall=lambda: 1_700_000_000.0 + simulated[0])
    settings = AggregatorSettings(  # interval 0.25 s: the history's queue holds 8 rounds
        port=0,
        interval_seconds=0.25,
        deadline_seconds=0.24,
        backoff_max_seconds=0,
        min_round_spacing_seconds=0,
    )
    async with AggregatorServer(
        registry, settings, clocks=clocks, interval_rounds=False, history=history, alerts=alerts
    ) as server:

        async def one() -> None:
            await server.loop.snapshot(0)
            simulated[0] += 1

        for _ in range(5):
            await one()
        writer = server.history
        if writer is not None:
            await writer.flush()
        started, worker = time.process_time(), writer.status().cpu_seconds if writer else 0.0
        for _ in range(rounds):
            await one()
        if writer is not None:
            await writer.flush()  # the worker's CPU for these rounds is in
            WORKER_CPU.append((writer.status().cpu_seconds - worker) / rounds)
        used = (time.process_time() - started) / rounds
        dropped = writer.status().dropped_rounds if writer else 0
    return used, dropped


WORKER_CPU: list[float] = []
"""The history worker's own CPU per round, per run with history (of `_cpu_per_round`)."""


def bench_cpu(rounds: int = 360, pairs: int = 3) -> None:
    """Aggregator CPU per round at 15 services, with history and without, alternating."""
    print(
        f"aggregator CPU per round, 15 busy agents (3 timed kinds), {rounds} rounds of 1 s "
        f"simulated wall time per run ({rounds // 120} seals), {pairs} runs each, alternating"
    )
    with busy_fleet(15) as registry, tempfile.TemporaryDirectory() as directory:
        for label, rules in (
            ("one alert rule (the round's wire message shared)", (SERVICE_DOWN,)),
            ("no rule, no stream (the history builds the message)", ()),
        ):
            alerts = AlertSettings(
                state_dir=directory, rules=tuple(rule_from_table(0, rule) for rule in rules)
            )
            _cpu_pairs(registry, label, alerts, directory, rounds, pairs)


def _cpu_pairs(
    registry: Registry, label: str, alerts: AlertSettings, directory: str, rounds: int, pairs: int
) -> None:
    results: dict[str, list[float]] = {"without history": [], "with history": []}
    dropped = 0
    for run in range(pairs):
        for name in results:
            history = None
            if name == "with history":
                history = HistorySettings(path=f"{directory}/history-{label[:3]}-{run}.sqlite3")
            cpu, lost = asyncio.run(_cpu_per_round(registry, history, rounds, alerts))
            results[name].append(cpu)
            dropped += lost
    print(f"  {label}:")
    for name, samples in results.items():
        print(
            f"    {name:16s} median {statistics.median(samples) * 1e3:6.3f} ms CPU/round "
            f"(runs: {', '.join(f'{s * 1e3:.3f}' for s in samples)})"
        )
    ratio = statistics.median(results["with history"]) / statistics.median(
        results["without history"]
    )
    verdict = "ok" if ratio <= TARGET_CPU_RATIO else "MISSED"
    worker = statistics.median(WORKER_CPU[-pairs:])
    print(
        f"    => with/without x{ratio:.3f} (target <= x{TARGET_CPU_RATIO}: {verdict}); of it, "
        f"the history worker's own CPU {worker * 1e3:.3f} ms/round; rounds dropped: {dropped}",
        flush=True,
    )


# ---------------------------------------------------------------- 2. writer


def _recorder(
    directory: str, monotonic: Any, opener: StoreOpener | None = None
) -> tuple[Recorder, OpenChunks]:
    """A recorder on a new SQLite file in `directory` (or on the store `opener` opens)."""
    memory = OpenChunks(TIERS)
    path = Path(directory) / "history.sqlite3"
    recorder = Recorder(
        opener or (lambda: SqliteStore(path, TIERS)),
        memory,
        buffer_rounds=300,
        monotonic=monotonic,
    )
    recorder.open()
    return recorder, memory


def _load(trackers: list[Any], busy: float, rng: random.Random, number: int) -> None:
    """Each kind of a `busy` share of the trackers gets 3 timed events."""
    for index, each in enumerate(trackers):
        if busy < 1.0 and (index + number) % round(1 / busy):
            continue
        for position, kind in enumerate(TIMED_KINDS):
            for event in range(3):
                seconds = 0.002 * (1 + position) * rng.lognormvariate(0.0, 0.5)
                each.observe(kind, seconds, error=(event + index + number) % 50 == 0)


def _writer_run(
    services: int, busy: float, rounds: int, opener: StoreOpener | None = None
) -> dict[str, float]:
    monotonic, wall, _ = fake_clocks()
    rng = random.Random(3)
    trackers = [tracker(f"svc-{index}", monotonic, wall) for index in range(services)]
    _load(trackers, 1.0, rng, 0)  # every kind timed once: 3000 kind series
    times: list[float] = []
    walls: list[float] = []  # with a server, the worker also waits for it (not CPU)
    seals = 0
    with tempfile.TemporaryDirectory() as directory:
        recorder, memory = _recorder(directory, monotonic, opener)
        for number in range(rounds):
            tick(monotonic, wall, 1.0)
            if busy:
                _load(trackers, busy, rng, number)
            message = wire_snapshot(wall(), trackers)
            sealed = memory.sealed_ms[0]
            started, wall_started = time.thread_time(), time.perf_counter()
            recorder.record(message)
            times.append(time.thread_time() - started)
            walls.append(time.perf_counter() - wall_started)
            seals += memory.sealed_ms[0] != sealed
        assert recorder.degraded == "" and recorder.dropped == 0
        recorder.finish()
    steady, wall = sorted(times[5:]), sorted(walls[5:])
    return {
        "mean": statistics.fmean(steady) * 1e3,
        "p50": statistics.median(steady) * 1e3,
        "p99": steady[min(len(steady) - 1, round(0.99 * (len(steady) - 1)))] * 1e3,
        "max": steady[-1] * 1e3,
        "seals": seals,
        "wall_mean": statistics.fmean(wall) * 1e3,
        "wall_p50": statistics.median(wall) * 1e3,
        "wall_p99": wall[min(len(wall) - 1, round(0.99 * (len(wall) - 1)))] * 1e3,
        "wall_max": wall[-1] * 1e3,
    }


def _observe_cost(services: int, rounds: int = 200) -> float:
    """Event-loop seconds per `HistoryWriter.observe` (the round's wire message shared)."""
    monotonic, wall, clocks = fake_clocks()
    trackers = [tracker(f"svc-{index}", monotonic, wall) for index in range(services)]
    whole = WholeSnapshots(keep=rounds + 1)
    snapshots = []
    for sequence in range(1, rounds + 1):
        tick(monotonic, wall, 1.0)
        snapshot = SnapshotData(sequence, wall(), monotonic(), 0.0, (), 0, 0, 0, 0, 0, 0, 0, ())
        whole._messages[(0, sequence)] = wire_snapshot(wall(), trackers)  # built by the alerts
        snapshots.append(snapshot)

    async def run() -> list[float]:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "history.sqlite3"
            writer = HistoryWriter(
                lambda: SqliteStore(path, TIERS), TIERS, whole=whole, clocks=clocks
            )
            writer.start()
            spent = []
            for snapshot in snapshots:
                started = time.perf_counter()
                await writer.observe(snapshot)
                spent.append(time.perf_counter() - started)
                await writer.flush()
            await writer.close()
        return spent

    return statistics.median(asyncio.run(run()))


def bench_writer(services: int = 1000, rounds: int = 250) -> None:
    """The writer's worker time per round at 1000 services; the event loop's share."""
    print(
        f"writer (worker thread) CPU per round at {services} services x 3 timed kinds, "
        f"{rounds} rounds of 1 s (seals included; target <= {TARGET_WRITER_MS} ms)"
    )
    for label, busy in (
        ("every kind busy every round", 1.0),
        ("a tenth of the services busy", 0.1),
        ("idle after start (bench_aggregator's fleet)", 0.0),
    ):
        figures = _writer_run(services, busy, rounds)
        verdict = "ok" if figures["mean"] <= TARGET_WRITER_MS else "MISSED"
        print(
            f"  {label:45s} mean {figures['mean']:6.2f} ms  p50 {figures['p50']:6.2f}  p99 "
            f"{figures['p99']:7.2f}  max {figures['max']:7.1f} ({figures['seals']:.0f} seals) "
            f"=> {verdict}",
            flush=True,
        )
    print(
        f"  event loop per round (HistoryWriter.observe, {services} services): "
        f"{_observe_cost(services) * 1e6:.1f} us (the rest runs on the worker thread)",
        flush=True,
    )


# ---------------------------------------------------------------- 3. disk


def _poisson(mean: float, rng: random.Random) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class SyntheticKind:
    """A kind's cumulative figures under Poisson arrivals with log-normal durations.

    Events of an interval fall in each bucket as independent Poisson counts (exact for
    Poisson arrivals), so an interval of any length costs a few dozen draws, not one per event.
    """

    def __init__(self, name: str, rate: float, median: float, sigma: float) -> None:
        self.name, self.rate = name, rate
        cdf = [
            0.5 * (1 + math.erf((math.log(upper_bound(i)) - math.log(median)) / (sigma * 2**0.5)))
            for i in range(MIN_INDEX - 1, MAX_INDEX + 1)
        ]
        shares = [high - low for low, high in pairwise(cdf)]
        self.shares = {
            index: share
            for index, share in zip(range(MIN_INDEX, MAX_INDEX + 1), shares, strict=True)
            if share > 1e-5
        }
        self.events = self.errors = self.total_ns = 0
        self.buckets: dict[int, int] = {}

    def advance(self, seconds: float, rng: random.Random) -> tuple[int, int, int]:
        """Add an interval of `seconds`; returns its highest bucket, its count there, max ns."""
        highest = count = 0
        for index, share in self.shares.items():
            drawn = _poisson(self.rate * seconds * share, rng)
            if drawn:
                self.buckets[index] = self.buckets.get(index, 0) + drawn
                self.events += drawn
                low = upper_bound(index - 1)  # the bucket's lower bound
                self.total_ns += round(drawn * low * rng.uniform(1.0, 1.04) * 1e9)
                highest, count = index, drawn
        self.errors += _poisson(self.rate * seconds * 0.01, rng)
        self.errors = min(self.errors, self.events)
        low = upper_bound(highest - 1)
        top = low + rng.random() * (upper_bound(highest) - low)
        return highest, count, round(top * 1e9) if count else 0

    def write(
        self, message: snapshot_pb2.EventKindRate, highest: int, count: int, top: int
    ) -> None:
        message.kind = self.name
        message.total_events, message.total_errors = self.events, self.errors
        if not self.buckets:
            return
        low, high = min(self.buckets), max(self.buckets)
        since = message.latency_since_start
        since.scale, since.offset = 4, low
        since.bucket_counts.extend(self.buckets.get(i, 0) for i in range(low, high + 1))
        since.count = self.events
        since.sum.seconds, since.sum.nanos = divmod(self.total_ns, 1_000_000_000)
        if count:
            message.latency.max.seconds, message.latency.max.nanos = divmod(top, 1_000_000_000)
            message.latency.histogram.offset = highest
            message.latency.histogram.bucket_counts.append(count)


def _synthetic_fleet(rng: random.Random) -> list[list[SyntheticKind]]:
    """15 services x 3 timed kinds at the demo's rates: a busy, a steady and a quiet kind."""
    fleet = []
    for _ in range(15):
        scale = 0.5 + rng.random()
        fleet.append(
            [
                SyntheticKind("message", 20.0 * scale, 0.004, 0.5),
                SyntheticKind("api_call", 2.0 * scale, 0.02, 0.6),
                SyntheticKind("data_fetch", 0.3 * scale, 0.25, 0.4),
            ]
        )
    return fleet


def _synthetic_round(fleet: list[list[SyntheticKind]], time_s: float, gap: float,
                     rng: random.Random) -> snapshot_pb2.Snapshot:  # fmt: skip
    message = snapshot_pb2.Snapshot()
    set_seconds(message.take_time, time_s)
    for index, kinds in enumerate(fleet):
        row = message.services.add(
            service_name=f"svc-{index}",
            service_type="core",
            status=snapshot_pb2.SERVICE_STATUS_ACTIVE,
        )
        set_seconds(row.call_latency, rng.uniform(0.0005, 0.004))
        set_seconds(row.last_seen_time, time_s)
        set_seconds(row.last_seen_age, 0.0)
        set_seconds(row.start_time, 1_600_000_000.0 + index)
        row.cpu_usage_percent = rng.uniform(1.0, 30.0)
        for kind in kinds:
            kind.write(row.kinds.add(), *kind.advance(gap, rng))
    return message


def _fill(directory: str, gap: float, rounds: int, seed: int) -> Recorder:
    """`rounds` rounds `gap` seconds apart of the synthetic fleet, written to a new store."""
    rng = random.Random(seed)
    fleet = _synthetic_fleet(rng)
    monotonic, wall, _ = fake_clocks()
    recorder, _ = _recorder(directory, monotonic)
    for _ in range(rounds):
        tick(monotonic, wall, gap)
        recorder.record(_synthetic_round(fleet, wall(), gap, rng))
    assert recorder.degraded == "" and recorder.dropped == 0
    return recorder


def _tier_numbers(store: SqliteStore, tier: Tier) -> tuple[int, int, int]:
    """(chunks, bytes, stored numbers) of a tier: a kind sample holds time, events, errors,
    the latency sum, its maximum (if timed) and two numbers per bucket; a service sample 8."""
    chunks = list(store.chunks(tier.key, [r.id for r in store.series()], -(2**62), 2**62))
    numbers = 0
    for chunk in chunks:
        for sample in decode_chunk(chunk.data).samples():
            if isinstance(sample, KindSample):
                numbers += 4 + 2 * len(sample.bucket_indexes) + (sample.latency_max_ns is not None)
            else:
                numbers += 8
    return len(chunks), sum(len(chunk.data) for chunk in chunks), numbers


DISK_RUNS = {
    0: (1.0, 7200, 24 / 2),
    1: (60.0, 4320, 30 / 3),
    2: (60.0, 4320, 90 / 3),
    3: (60.0, 4320, 90 / 3),
}
"""Per tier: the round gap (s) and rounds of the run that fills it, and the factor to its
retention (2 h of 1 s rounds x 12; 3 days of 60 s rounds x 10, x 30, and x 30 for the hourly
summary)."""


def _disk_line(
    tier: Tier, store: SqliteStore, gap: float, rounds: int, factor: float
) -> tuple[float, float, float]:
    """Print one tier's figures; returns (chunk bytes, SQLite bytes, fixed bytes) at retention."""
    chunks, size, numbers = _tier_numbers(store, tier)
    whole = store.size()
    fixed = whole.free_bytes + whole.log_bytes + whole.head_bytes
    used = whole.total_bytes - fixed
    per_chunk = (used - sum(t.bytes for t in whole.tiers)) / sum(t.chunks for t in whole.tiers)
    full = size * factor
    print(
        f"  {tier.text:7s} {size / numbers:5.2f} B/number (baseline "
        f"{PROMETHEUS_BYTES_PER_SAMPLE} B Prometheus, 8 B raw): {numbers} numbers in "
        f"{chunks} chunks, {size / 1e6:5.2f} MB for "
        f"{rounds * gap / 3600:5.1f} h -> {full / 1e6:6.1f} MB at retention (x{factor:g}), "
        f"+{per_chunk:.0f} B of SQLite per chunk"
    )
    return full, chunks * factor * per_chunk, fixed


def bench_disk() -> None:
    """Bytes per stored number per tier and the total for the default retention."""
    print(
        "disk, 15 services x 3 timed kinds (busy 20/s, steady 2/s, quiet 0.3/s per service, "
        f"scaled 0.5-1.5x), default tiers {', '.join(DEFAULT_TIERS)} and the hourly summary "
        f"{TIERS[-1].text}"
    )
    chunk_bytes = sqlite_bytes = fixed = 0.0
    with tempfile.TemporaryDirectory() as directory:
        fills: dict[float, Recorder] = {}
        for gap, rounds, _ in DISK_RUNS.values():
            if gap not in fills:
                Path(f"{directory}/{gap:g}").mkdir()
                fills[gap] = _fill(f"{directory}/{gap:g}", gap, rounds, seed=11)
        for index, (gap, rounds, factor) in DISK_RUNS.items():
            store = fills[gap].store
            assert isinstance(store, SqliteStore)
            full, extra, fixed_now = _disk_line(TIERS[index], store, gap, rounds, factor)
            chunk_bytes, sqlite_bytes, fixed = (
                chunk_bytes + full,
                sqlite_bytes + extra,
                max(fixed, fixed_now),
            )
        for recorder in fills.values():
            recorder.finish()
    total = chunk_bytes + sqlite_bytes + fixed
    verdict = "ok" if total <= TARGET_TOTAL_MB * 1e6 else "MISSED"
    print(
        f"  => 90 days of the default retention: {total / 1e6:.1f} MB on disk = "
        f"{chunk_bytes / 1e6:.1f} MB of chunks + {sqlite_bytes / 1e6:.1f} MB of SQLite rows, "
        f"indexes and page slack + {fixed / 1e6:.1f} MB of write-ahead log, free pages and head "
        f"(target <= {TARGET_TOTAL_MB:.0f} MB: {verdict})",
        flush=True,
    )


# ---------------------------------------------------------------- 4. exactness


def _exact_run() -> tuple[HistoryReader, Workload, int, Recorder]:
    monotonic, wall, _ = fake_clocks()
    rng = random.Random(21)
    names = ("orders-api", "billing-api", "search-api")
    work = Workload({name: tracker(name, monotonic, wall) for name in names})
    directory = tempfile.mkdtemp()
    recorder, memory = _recorder(directory, monotonic)
    for _ in range(7200):
        tick(monotonic, wall, 1.0)
        for name in names:
            for position, kind in enumerate(TIMED_KINDS):
                for _ in range(_poisson(4.0 / (1 + position), rng)):
                    seconds = 0.01 * (1 + position) * rng.lognormvariate(0.0, 0.8)
                    work.feed(name, kind, seconds, error=rng.random() < 0.05)
        recorder.record(wire_snapshot(wall(), list(work.trackers.values())))
        work.reported_at(int(wall() * 1000))
    return HistoryReader(memory), work, int(wall() * 1000), recorder


def _errors(reader: HistoryReader, work: Workload, tier: Tier, step: int, now: int) -> list[float]:
    """Worst |error| of rate and error rate, worst relative error of p50/p95/p99 (fleet)."""
    start = -(-(now - 7_200_000) // step) * step + step
    end = now // step * step
    keys = [SeriesKey(name, kind) for name in work.trackers for kind in TIMED_KINDS]
    samples = reader.read(keys, tier, start - step, end)
    expected = exact_windows(work.reported, start, end, step)
    worst = [0.0] * 5
    figures = (
        "events_per_second",
        "error_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
    )
    for position, figure in enumerate(figures):
        found = dict(evaluate_range(samples, figure, start, end, step))
        for t, window in expected.items():
            if position == 0:
                error = abs(found[t] - window.events / (step / 1000))
            elif position == 1:
                error = abs(found[t] - window.errors / window.events)
            else:
                exact = window.quantile((50, 95, 99)[position - 2] / 100) * 1000
                error = abs(found[t] - exact) / exact
            worst[position] = max(worst[position], error)
    return worst


def bench_exactness() -> None:
    """The exactness table: each tier's figures against the exact ones of the same events."""
    reader, work, now, recorder = _exact_run()
    print(
        f"exactness, 3 services x 3 timed kinds, {len(work.reported)} events in 2 h of 1 s "
        f"rounds (fleet figures; quantile bound {RELATIVE_ERROR:.2%}, the buckets' stated error)"
    )
    print("  tier     step   windows  rate |err|  err.rate |err|  p50 rel   p95 rel   p99 rel")
    for tier, step in ((TIERS[0], 60_000), (TIERS[1], 60_000), (TIERS[1], 3_600_000),
                       (TIERS[2], 300_000), (TIERS[2], 3_600_000),
                       (TIERS[3], 3_600_000)):  # fmt: skip
        worst = _errors(reader, work, tier, step, now)
        windows = len(exact_windows(work.reported, now - 7_200_000, now, step))
        print(
            f"  {tier.text:7s} {step // 1000:5d}s {windows:8d}  {worst[0]:9.2g}  {worst[1]:13.2g}  "
            f"{worst[2]:7.2%}  {worst[3]:8.2%}  {worst[4]:8.2%}"
        )
    print(
        "  baseline, the same events read the way percentiles must not be: the mean of the "
        f"1 min p99s over each hour is up to {_averaged_p99_error(reader, work, now):.1%} off"
    )
    recorder.finish()


def _averaged_p99_error(reader: HistoryReader, work: Workload, now: int) -> float:
    """Worst relative error of 'the hour's p99 = the mean of its minutes' p99s'."""
    hour, minute = 3_600_000, 60_000
    keys = [SeriesKey(name, kind) for name in work.trackers for kind in TIMED_KINDS]
    end = now // hour * hour
    samples = reader.read(keys, TIERS[1], end - 2 * hour, end)
    minutes = dict(evaluate_range(samples, "latency_p99_ms", end - 2 * hour + minute, end, minute))
    worst = 0.0
    for t, window in exact_windows(work.reported, end - hour, end, hour).items():
        inside = [value for at, value in minutes.items() if t - hour < at <= t]
        exact = window.quantile(0.99) * 1000
        worst = max(worst, abs(statistics.fmean(inside) - exact) / exact)
    return worst


PARTS = {"cpu": bench_cpu, "writer": bench_writer, "disk": bench_disk, "exactness": bench_exactness}


def main(argv: list[str] | None = None) -> None:
    chosen = argv if argv else list(PARTS)
    for name in chosen:
        PARTS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
