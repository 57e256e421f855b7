"""History query latency, warm: through gRPC (QueryRange) and through the gateway (Prometheus JSON).

python -m bench history_query                 # fill a store (about a minute), then query it
python -m bench.bench_history_query --rounds 30

The store holds a 15-service fleet with 3 timed kinds each (bench_history's synthetic fleet:
Poisson arrivals, log-normal durations, the demo's rates), written through the recorder: 90
days of rounds 5 minutes apart, then the last day one round a minute (so the 1 m tier holds
that day and the 5 m tier the 90 days). A real aggregator then serves that file with its wall
clock at the end of the fill, and the real gateway (uvicorn) asks it. Queries, each warm (the
first answer discarded), `--rounds` times, p50 and p90 of the client's time:

- 24 h at a 1 min step of one figure for the 15 services (`events_per_second{kind=""}`: each
  service's kinds summed; and `latency_p99_ms{kind=""}`: their buckets merged), target p50
  <= 50 ms;
- 90 days at a 1 h step of the same figures, target p50 <= 100 ms.

The engine's own time (read, evaluate) is printed beside, from the same store without gRPC:
the baseline the wire and the gateway add to; and its first answer, before it keeps decoded
chunks and final windows (`aggregator/_history/decoded.py`, `window_cache.py`): the cost of
a query nobody asked before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from metricsmesh.v1 import aggregator_pb2_grpc, history_pb2

from aggregator import AggregatorServer, HistorySettings, Registry
from aggregator._history import parse_tiers
from aggregator._history.engine import QueryEngine, QueryLimits
from aggregator._history.memory import OpenChunks
from aggregator._history.recorder import Recorder
from aggregator._history.sqlite import SqliteStore
from aggregator._history.store import META_SEALED, meta_checkpoint, meta_complete
from aggregator._history.tiers import DEFAULT_TIERS
from bench.bench_history import SyntheticKind, _synthetic_fleet, _synthetic_round
from gateway import GatewaySettings
from mesh_common.latency import upper_bound
from tests.gateway_mesh import serve_gateway
from tests.history_mesh import aggregator_settings, fake_clocks, tick

DAY = 86_400
FILL_DAYS = 90
FILL_END = 1_750_000_000.0 + FILL_DAYS * DAY
"""The time of the fill's last round (it starts at a UTC midnight)."""
QUERIES = ('events_per_second{service!="", kind=""}', 'latency_p99_ms{service!="", kind=""}')
RANGES = {"24 h at 1 min": (DAY, 60, 50.0), "90 d at 1 h": (FILL_DAYS * DAY, 3600, 100.0)}
"""Name: (range seconds, step seconds, target p50 ms)."""


class SteadyKind(SyntheticKind):
    """A synthetic kind whose interval draws one random factor, not a Poisson count per bucket.

    The query benchmark needs the store's shape (samples, buckets per sample), not exact
    arrival statistics; this makes a round of 45 kinds cost well under a millisecond.
    """

    def advance(self, seconds: float, rng: random.Random) -> tuple[int, int, int]:
        """Add an interval of `seconds`; returns its highest bucket, its count there, max ns."""
        factor = rng.uniform(0.8, 1.2) * self.rate * seconds
        highest = count = 0
        for index, share in self.shares.items():
            drawn = int(share * factor + 0.5)
            if drawn:
                self.buckets[index] = self.buckets.get(index, 0) + drawn
                self.events += drawn
                self.total_ns += round(drawn * upper_bound(index - 1) * 1.02e9)
                highest, count = index, drawn
        self.errors = min(self.events, self.errors + int(factor * 0.01 + rng.random()))
        top = upper_bound(highest - 1) * 1.01
        return highest, count, round(top * 1e9) if count else 0


def steady_fleet(rng: random.Random) -> list[list[SyntheticKind]]:
    """bench_history's synthetic fleet (15 services x 3 kinds), its kinds steady."""
    fleet = _synthetic_fleet(rng)
    for kinds in fleet:
        for kind in kinds:
            kind.__class__ = SteadyKind
    return fleet


def fill(path: Path) -> float:
    """Write the fleet's history to `path`; returns the wall time of the last round.

    The 89 days of 5 min rounds are written with the 5 m tier alone and the last day of 1 min
    rounds with the 1 m and 5 m tiers (each with the hourly summary after them): the same
    samples the default tiers would keep (a tier
    is kept by its resolution; the aggregator then opens the file with the default tiers),
    without sealing a 1 s chunk at every round of a fill that has none to keep.
    """
    rng = random.Random(5)
    fleet = steady_fleet(rng)
    monotonic, wall, _ = fake_clocks(FILL_END - FILL_DAYS * DAY)
    started = time.perf_counter()
    rounds = 0
    for tiers, gap, count in (
        (("5m:90d",), 300.0, (FILL_DAYS - 1) * DAY // 300),
        (("1m:30d", "5m:90d"), 60.0, DAY // 60),
    ):
        memory = OpenChunks(parse_tiers(tiers, summary=True))
        recorder = Recorder(
            lambda tiers=tiers: SqliteStore(path, parse_tiers(tiers, summary=True)),
            memory,
            buffer_rounds=300,
            monotonic=monotonic,
        )
        recorder.open()
        for _ in range(count):
            tick(monotonic, wall, gap)
            recorder.record(_synthetic_round(fleet, wall(), gap, rng))
        recorder.finish()
        assert recorder.degraded == "" and recorder.dropped == 0
        rounds += count
    _adopt_minutes(path)
    print(
        f"  filled {rounds} rounds of 15 services x 3 kinds in "
        f"{time.perf_counter() - started:.0f} s: {path.stat().st_size / 1e6:.0f} MB",
        flush=True,
    )
    return wall()


def _adopt_minutes(path: Path) -> None:
    """Have the default tiers read the 1 m chunks the fill's last day wrote.

    The fill wrote them as its finest tier, whose progress is the store's `sealed_ms`; opened
    with a 1 s tier before it, the 1 m tier's progress is its own meta key: the same value
    (without it the 1 m tier read nothing stored, and the 24 h query 66 points per series).
    """
    tiers = parse_tiers(DEFAULT_TIERS, summary=True)
    store = SqliteStore(path, tiers)
    try:
        sealed = store.meta()[META_SEALED]
        minute = next(tier for tier in tiers if tier.resolution_ms == 60_000)
        progress = {meta_complete(minute): sealed, meta_checkpoint(minute): sealed}
        store.seal([], [], int(sealed), progress)
    finally:
        store.close()


@contextlib.asynccontextmanager
async def serving(path: Path, end: float) -> AsyncIterator[tuple[AggregatorServer, str]]:
    """The aggregator on the filled file (wall clock at `end`) and the gateway's URL."""
    _, _, clocks = fake_clocks(end)
    server = AggregatorServer(
        Registry([]),
        aggregator_settings(),
        clocks=clocks,
        interval_rounds=False,
        history=HistorySettings(path=str(path)),
    )
    async with server:
        settings = GatewaySettings(aggregator=server.address, rate_limit_per_second=0)
        async with serve_gateway(settings) as (_, port):
            yield server, f"http://127.0.0.1:{port}"


async def timed(call: Callable[[], Awaitable[object]], rounds: int) -> tuple[float, float]:
    """(p50, p90) in ms of `rounds` calls after a warm-up call."""
    await first_call(call)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    deciles = statistics.quantiles(times, n=10)
    return statistics.median(times), deciles[8]


async def first_call(call: Callable[[], Awaitable[object]]) -> float:
    """The time in ms of one call."""
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def measure(path: Path, end: float, rounds: int) -> None:
    async with (
        serving(path, end) as (server, url),
        grpc.aio.insecure_channel(server.address) as channel,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        assert server.history is not None
        engine = QueryEngine(server.history.reader, QueryLimits(), wall=lambda: end)
        for name, (span, step, target) in RANGES.items():
            start_s = int(end) - span
            for query in QUERIES:
                request = history_pb2.QueryRangeRequest(query=query)
                request.start_time.FromSeconds(start_s)
                request.end_time.FromSeconds(int(end))
                request.step.FromSeconds(step)
                params = {"query": query, "start": start_s, "end": int(end), "step": step}

                async def grpc_call(request: history_pb2.QueryRangeRequest = request) -> None:
                    response = await stub.QueryRange(request, timeout=60)
                    assert len(response.series) == 15, len(response.series)

                async def http_call(params: dict[str, object] = params) -> None:
                    response = await http.get("/api/v1/metrics/query/range", params=params)
                    assert response.status_code == 200, response.text[:200]

                def engine_call(
                    query: str = query, start: int = start_s, step: int = step
                ) -> object:
                    return engine.query_range(query, start * 1000, int(end) * 1000, step * 1000)

                async def in_thread(work: Callable[[], object] = engine_call) -> None:
                    await asyncio.to_thread(work)

                cold = await first_call(in_thread)  # nothing kept yet: reads every chunk
                engine_p50, _ = await timed(in_thread, rounds)
                grpc_p50, grpc_p90 = await timed(grpc_call, rounds)
                http_p50, http_p90 = await timed(http_call, rounds)
                verdict = "ok" if max(grpc_p50, http_p50) <= target else "MISSED"
                print(
                    f"  {name:13s} {query:27s} engine first {cold:7.1f} p50 {engine_p50:6.1f} ms"
                    f" | gRPC p50 "
                    f"{grpc_p50:6.1f} p90 {grpc_p90:6.1f} ms | gateway p50 {http_p50:6.1f} p90 "
                    f"{http_p90:6.1f} ms (target p50 <= {target:.0f} ms: {verdict})",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> None:
    """Fill a store, then measure the queries (module doc)."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_history_query")
    parser.add_argument("--rounds", type=int, default=30, help="calls per figure (default 30)")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="FILE",
        help="fill this file once and reuse it on later runs (the fill takes minutes)",
    )
    args = parser.parse_args([] if argv is None else argv)
    print("history queries, warm, 15 services x 3 timed kinds, default tiers", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "history.sqlite3"
        if args.keep is not None and args.keep.exists():
            shutil.copyfile(args.keep, path)  # the aggregator's writes stay out of the kept one
            end = FILL_END
        else:
            end = fill(path)
            if args.keep is not None:
                shutil.copyfile(path, args.keep)
        asyncio.run(measure(path, end, args.rounds))


if __name__ == "__main__":
    main(sys.argv[1:])
