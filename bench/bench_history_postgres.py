"""History on PostgreSQL beside SQLite: queries and seed 004's SQL, the writer's time per round.

python -m bench history_postgres                    # both parts (minutes)
python -m bench.bench_history_postgres queries | writer   # one part

A real PostgreSQL server (Debian's binaries, `tests/postgres_server.py`) with its default,
durable settings (fsync on), in a temporary directory; the SQLite store in another. Both are
filled with the same simulated days in the same run, so SQLite is the baseline of each figure.

1. queries: the synthetic fleet of `bench_history` (15 services x 3 timed kinds, Poisson
   arrivals, log-normal durations): 25 h of 60 s rounds ending now, written through one
   recorder per backend; then the 1 m and 5 m tiers' last day repeated back in time day by
   day to their retention (30 and 90 days), encoded and stored as the writer stores chunks,
   so a query reads as many chunks and samples as after 90 real days (writing 90 days of
   rounds through the recorder takes over an hour here). Then, warm (the same query run before),
   `latency_p99_ms` of each of the 15 services (its 3 kinds' buckets merged) over the last
   24 h at a 1-min step (the 1 m tier: 1440 points per service) and over the last 90 days at
   a 1-h step (the 5 m tier: 2160 points), as the query API reads them (`HistoryReader.read`
   of the tier `choose_tier` picks, then `evaluate_range`); p50 of 15 (3) runs, split into
   the backend's part (`store.chunks`: the rows and their bytes), decoding the chunks into
   samples, and evaluating the figure (both backend-neutral). Targets: <= 50 ms and <= 100 ms.
2. writer: `bench_history`'s writer run (every kind busy every round, 250 rounds of 1 s,
   seals included) at 15 and 1000 services on each backend: the worker thread's CPU per round
   and its wall time (on PostgreSQL it also waits for the server). Target <= 15 ms at 1000.
   Then seed 004's "Get service health" SQL, read from the document, on the view of the
   filled PostgreSQL store, and with `history_minutes` padded to the minute tier's full
   retention (30 days of minutes for 15 services: 648,000 rows); p50 and p90 of 50 runs, warm.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

from aggregator._history import HistoryStore, Sample, SeriesKey, choose_tier, evaluate_range
from aggregator._history.codec import columns_of
from aggregator._history.engine import QueryEngine, QueryLimits
from aggregator._history.memory import NEVER, OpenChunks
from aggregator._history.postgres import PostgresStore
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.sealing import chunk_record, spans
from aggregator._history.sqlite import SqliteStore
from aggregator._history.store import StoreOpener
from bench.bench_history import (
    TARGET_WRITER_MS,
    TIERS,
    SyntheticKind,
    _synthetic_fleet,
    _synthetic_round,
    _writer_run,
)
from tests.history_mesh import fake_clocks, tick
from tests.postgres_server import PostgresServer
from tests.seeds import sql_under

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
TARGET_DAY_MS, TARGET_90_DAYS_MS = 50.0, 100.0
GAP, ROUNDS = 60.0, 25 * 60
"""The recorder writes 25 h of 60 s rounds (older days are that last day repeated)."""


def _server() -> PostgresServer:
    return PostgresServer.start_new(settings=())  # PostgreSQL's defaults: fsync on


def _openers(server: PostgresServer, directory: str) -> dict[str, StoreOpener]:
    database = server.new_database()
    path = Path(directory) / "history.sqlite3"
    return {
        "sqlite": lambda: SqliteStore(path, TIERS),
        "postgresql": lambda: PostgresStore(server.url(database), TIERS),
    }


class _Replayed(SyntheticKind):
    """A synthetic kind whose intervals are replayed from DRAWS drawn ones per gap: a 300 s
    interval costs hundreds of Poisson draws, and 90 days of them would outlast the bench."""

    DRAWS = 24

    def __init__(self, kind: SyntheticKind) -> None:  # takes over `kind`'s state
        self.__dict__.update(kind.__dict__)
        self.drawn: dict[float, list[tuple[dict[int, int], int, int, int, Any]]] = {}

    def advance(self, seconds: float, rng: random.Random) -> tuple[int, int, int]:
        drawn = self.drawn.setdefault(seconds, [])
        if len(drawn) < self.DRAWS:
            before = dict(self.buckets), self.events, self.errors, self.total_ns
            result = super().advance(seconds, rng)
            added = {
                index: count - before[0].get(index, 0)
                for index, count in self.buckets.items()
                if count != before[0].get(index, 0)
            }
            drawn.append(
                (
                    added,
                    self.events - before[1],
                    self.errors - before[2],
                    self.total_ns - before[3],
                    result,
                )
            )
            return result
        added, events, errors, total, result = rng.choice(drawn)
        for index, count in added.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.events += events
        self.errors += errors
        self.total_ns += total
        return result


def _fill(
    openers: dict[str, StoreOpener],
) -> tuple[dict[str, Recorder], dict[str, OpenChunks], int]:
    """The simulated 90 days in every backend (the same rounds); the end time (ms)."""
    rng = random.Random(90)
    fleet = [[_Replayed(kind) for kind in kinds] for kinds in _synthetic_fleet(rng)]
    monotonic, wall, _ = fake_clocks(start=time.time() - ROUNDS * GAP)  # ends now: NOW()
    first_ms = int(wall() * 1000)
    recorders, memories = {}, {}
    for name, opener in openers.items():
        memories[name] = OpenChunks(TIERS)
        recorders[name] = Recorder(opener, memories[name], buffer_rounds=300, monotonic=monotonic)
        recorders[name].open()
    spent = dict.fromkeys(openers, 0.0)
    for _ in range(ROUNDS):
        tick(monotonic, wall, GAP)
        message = _synthetic_round(fleet, wall(), GAP, rng)
        for name, recorder in recorders.items():
            started = time.perf_counter()
            recorder.record(message)
            spent[name] += time.perf_counter() - started
    now = int(wall() * 1000)
    for name, recorder in recorders.items():
        assert recorder.degraded == "" and recorder.dropped == 0, recorder.degraded
        started = time.perf_counter()
        chunks = _back_date(recorder, memories[name], first_ms, now)
        spent[name] += time.perf_counter() - started
    print(
        f"  filled: {ROUNDS} rounds of {GAP:.0f} s (25 h) written by the recorder, then the "
        f"1 m and 5 m tiers' last day repeated back to 30 and 90 days ({chunks} chunks); "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in spent.items()),
        flush=True,
    )
    return recorders, memories, now


def _back_date(recorder: Recorder, memory: OpenChunks, first_ms: int, now_ms: int) -> int:
    """Each series' last day of the 1 m and 5 m tiers repeated back in time, day by day, up
    to each tier's retention, encoded and stored as the writer stores chunks; their count."""
    store = recorder.store
    assert store is not None
    reader = HistoryReader(memory)
    records = memory.series()
    stored = 0
    for tier in TIERS[1:]:
        days = tier.retention_ms // DAY_MS - 1
        for record in records:
            day = reader.read([record.key], tier, now_ms - DAY_MS, now_ms).get(record.key, [])
            shifted = [
                sample._replace(time_ms=sample.time_ms - back * DAY_MS)
                for back in range(days, 0, -1)
                for sample in day
                if sample.time_ms - back * DAY_MS <= first_ms
            ]
            if not shifted:
                continue
            columns = columns_of(shifted, record.kind == "")
            chunks = [chunk_record(tier, record.id, part) for part in spans(columns, tier.chunk_ms)]
            store.seal(chunks, [], NEVER, {})
            stored += len(chunks)
    return stored


class _Query:
    """latency_p99_ms of each of the 15 services over the last `span_ms` at `step_ms`, in its
    three parts: the backend's fetch of the chunks, the read (fetch + decode + open samples),
    the whole (read + `evaluate_range`)."""

    def __init__(self, reader: HistoryReader, now_ms: int, span_ms: int, step_ms: int) -> None:
        self.reader, self.step = reader, step_ms
        self.start = (now_ms - span_ms) // step_ms * step_ms + step_ms
        self.end = now_ms // step_ms * step_ms
        self.tier = choose_tier(reader.tiers, self.start, now_ms, step_ms)
        self.services = [f"svc-{index}" for index in range(15)]
        self.keys = [SeriesKey(s, kind) for s in self.services for kind in SYNTHETIC_KINDS]

    def fetch(self, store: HistoryStore) -> int:
        ids = [record.id for record in self.reader.series() if record.key in set(self.keys)]
        chunks = store.chunks(self.tier.key, ids, self.start - self.step, self.end)
        return sum(len(chunk.data) for chunk in chunks)

    def read(self) -> dict[SeriesKey, list[Sample]]:
        return self.reader.read(self.keys, self.tier, self.start - self.step, self.end)

    def whole(self) -> int:
        samples = self.read()
        points = 0
        for service in self.services:
            mine = [samples.get(SeriesKey(service, kind), []) for kind in SYNTHETIC_KINDS]
            points += len(evaluate_range(mine, "latency_p99_ms", self.start, self.end, self.step))
        return points


def _engine_times(memory: OpenChunks, now_ms: int, query: _Query, runs: int) -> tuple[float, float]:
    """The engine's first answer to the same query (nothing kept yet) and its warm p50, in ms:
    what QueryRange does before the wire (tier, read, evaluate, its caches)."""
    engine = QueryEngine(HistoryReader(memory), QueryLimits(), wall=lambda: now_ms / 1000)
    selector = 'latency_p99_ms{service!="", kind=""}'

    def asked() -> int:
        answer = engine.query_range(selector, query.start, query.end, query.step)
        return sum(len(series.points) for series in answer.series)

    started = time.perf_counter()
    asked()
    first = (time.perf_counter() - started) * 1e3
    warm, _, _ = _timed(asked, runs)
    return first, warm


SYNTHETIC_KINDS = ("message", "api_call", "data_fetch")
"""The synthetic fleet's kinds (bench_history._synthetic_fleet)."""


def _timed(work: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """p50 and p90 milliseconds of `runs` warm runs of `work` (one run before), its result."""
    result = work()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - started) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))], result


def bench_queries() -> None:
    print("queries, warm: latency_p99_ms of 15 services (3 kinds' buckets merged each)")
    with ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
        server = _server()
        stack.callback(server.close)
        recorders, memories, now = _fill(_openers(server, directory))
        for name, memory in memories.items():
            store = recorders[name].store
            assert store is not None
            for label, span, step, target, runs in (
                ("24 h at 1 min", DAY_MS, 60_000, TARGET_DAY_MS, 15),
                ("90 d at 1 h  ", 90 * DAY_MS, HOUR_MS, TARGET_90_DAYS_MS, 3),
            ):
                query = _Query(HistoryReader(memory), now, span, step)
                fetch, _, size = _timed(lambda q=query, s=store: q.fetch(s), runs)
                read, _, _ = _timed(query.read, runs)
                whole, p90, points = _timed(query.whole, runs)
                first, warm = _engine_times(memory, now, query, runs)
                verdict = "ok" if warm <= target else "MISSED"
                print(
                    f"  {name:10s} {label} ({query.tier.text}): read + evaluate p50 {whole:8.1f}"
                    f" ms (p90 {p90:8.1f}) = fetch {fetch:6.1f} ms ({size / 1e6:.1f} MB of "
                    f"chunks) + decode {read - fetch:7.1f} + evaluate {whole - read:7.1f}; "
                    f"{points} points; the engine (QueryRange's work): first {first:7.1f} ms, "
                    f"warm p50 {warm:6.1f} ms; target <= {target:.0f} ms: {verdict}",
                    flush=True,
                )
        for name, recorder in recorders.items():
            store = recorder.store
            assert store is not None
            size = store.size()
            print(f"  {name:10s} store after 90 days: {size.total_bytes / 1e6:.1f} MB")
        postgres = recorders["postgresql"].store
        assert isinstance(postgres, PostgresStore)
        _seed004(postgres)
        for recorder in recorders.values():
            recorder.finish()


def bench_writer(rounds: int = 250) -> None:
    print(
        f"writer per round, every kind busy, {rounds} rounds of 1 s (seals included): the worker "
        f"thread's CPU and its wall time (target <= {TARGET_WRITER_MS} ms at 1000 services)"
    )
    with ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
        server = _server()
        stack.callback(server.close)
        for services in (15, 1000):
            for name, opener in _openers(server, directory).items():
                figures = _writer_run(services, 1.0, rounds, opener)
                print(
                    f"  {services:4d} services {name:10s} CPU mean {figures['mean']:6.2f} ms "
                    f"p50 {figures['p50']:6.2f} | wall mean {figures['wall_mean']:6.2f} ms "
                    f"p50 {figures['wall_p50']:6.2f} p99 {figures['wall_p99']:7.2f} "
                    f"max {figures['wall_max']:7.1f} ({figures['seals']:.0f} seals)",
                    flush=True,
                )
                Path(directory, "history.sqlite3").unlink(missing_ok=True)


_PAD = """
INSERT INTO history_minutes AS m (end_time, service, seconds, complete, kind_samples, events,
    errors, timed, latency_ns, rounds, active_rounds, cpu_milli, cpu_count, answered)
SELECT t, s.id, 60, true, 3, 1300, 13, 1300, 1300 * 20000000::bigint, 60, 60, 600000, 60, 60
FROM history_series s,
     generate_series(date_trunc('minute', now()) - interval '30 days', date_trunc('minute', now()),
                     interval '1 minute') AS t
WHERE s.kind = ''
ON CONFLICT (end_time, service) DO NOTHING
"""


def _seed004(store: PostgresStore) -> None:
    """Seed 004's SQL on the filled store, then with its minute rows padded to 30 days."""
    health = sql_under("004", "Get service health")
    print("  seed 004's 'Get service health' SQL on the system_metrics view, warm, 50 runs:")
    with psycopg.connect(store.url, autocommit=True) as database:
        for label in ("as filled", "padded to 30 days of minutes"):
            if label.startswith("padded"):
                database.execute(_PAD)
                database.execute("ANALYZE history_minutes")
            count = database.execute("SELECT count(*) FROM history_minutes").fetchone()
            p50, p90, rows = _timed(lambda: database.execute(health).fetchall(), 50)
            print(
                f"    {label}: {count[0] if count else 0} minute rows: p50 {p50:.2f} ms "
                f"p90 {p90:.2f} ms ({len(rows)} services, "
                f"{sum(row[2] for row in rows)} minutes averaged)",
                flush=True,
            )


PARTS = {"queries": bench_queries, "writer": bench_writer}


def main(argv: list[str] | None = None) -> None:
    for name in argv or list(PARTS):
        PARTS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
