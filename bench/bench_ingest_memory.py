"""What a pushed series and a pushed row cost the aggregator, and what a flood of series costs.

python -m bench ingest_memory

Each figure is measured in a fresh process (`multiprocessing`, spawn) from /proc's RSS after a
garbage collection, before and after:

- per series: 100,000 series of one metric (labels `host`, `region`, `instance` as seed 003
  sends them), pushed through `Ingestor.ingest` in batches of 1000. Baseline, same run: the
  least a Python store can hold, a dict from (name, sorted label tuple) to the float.
- per pushed row: 1000 pushed services with 2 kinds each, timed events every second for 60 s
  (every checkpoint of the window held), then read as rows.
- a flood: 1,000,000 distinct label sets against the caps (`max_series` 10,000): RSS growth
  must stay near what the 10,000 held series cost, whatever was refused.

Target (issue 18): at most 2 KB per pushed series.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable
from typing import Any

from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.model import KindPoint, MetricPoint, MetricType
from aggregator._ingest.settings import IngestSettings
from mesh_common.clocks import Clocks
from mesh_common.latency import Histogram, index_of

SERIES = 100_000
ROWS = 1000
FLOOD = 1_000_000
FLOOD_CAP = 10_000
BATCH = 1000


def rss() -> int:
    """This process's resident set size in bytes, after a collection."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class Clock:
    """A clock the bench moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ingestor(clock: Clock, **settings: Any) -> Ingestor:
    """An Ingestor on `clock` with `settings` over the defaults."""
    clocks = Clocks(monotonic=clock, wall=lambda: 1_800_000_000.0 + clock.now)
    return Ingestor(IngestSettings(otlp_port=-1, **settings), clocks)


def points(start: int, count: int) -> list[MetricPoint]:
    """`count` gauges of cpu_usage_percent, each a distinct label set from `start` on."""
    return [
        MetricPoint(
            "cpu_usage_percent",
            MetricType.GAUGE,
            float(i % 100),
            {"host": f"server{i:07d}", "region": "us-east-1", "instance": f"i-{i:08x}"},
        )
        for i in range(start, start + count)
    ]


def ours(count: int) -> tuple[int, int]:
    """RSS growth holding `count` series in an Ingestor, and how many it holds."""
    target = ingestor(Clock(), max_series=count, max_series_per_metric=count)
    before = rss()
    for start in range(0, count, BATCH):
        target.ingest(points(start, BATCH))
    return rss() - before, target.series.count


def baseline(count: int) -> tuple[int, int]:
    """RSS growth holding `count` series as a plain dict of label tuples to floats."""
    held: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    before = rss()
    for start in range(0, count, BATCH):
        for point in points(start, BATCH):
            held[(point.name, tuple(sorted(point.labels.items())))] = point.value
    return rss() - before, len(held)


def rows(count: int) -> tuple[int, int]:
    """RSS growth holding `count` pushed services (2 kinds, a full window of timed events)."""
    clock = Clock()
    target = ingestor(clock, max_services=count)
    before = rss()
    for _ in range(61):
        batch = []
        for i in range(count):
            for kind in ("GET /a", "POST /b"):
                seconds = 0.001 * (1 + i % 50)
                latency = Histogram(index_of(seconds), (3,), 3 * seconds, seconds)
                batch.append(KindPoint(f"svc-{i}", kind, 3, 0, latency))
        for start in range(0, len(batch), BATCH):
            target.ingest(kinds=batch[start : start + BATCH])
        clock.now += 1.0
    target.round()
    return rss() - before, len(target.services.services)


def flood(count: int = FLOOD, cap: int = FLOOD_CAP) -> tuple[int, int, int]:
    """RSS growth after `count` distinct label sets against `max_series` = `cap`.

    Returns (growth in bytes, series held, items refused).
    """
    target = ingestor(Clock(), max_series=cap)
    before = rss()
    for start in range(0, count, BATCH):
        target.ingest(points(start, BATCH))
    return rss() - before, target.series.count, sum(target.refused_total.values())


def _child(function: Callable[..., Any], args: tuple[Any, ...], queue: Any) -> None:
    queue.put(function(*args))


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` run in a fresh (spawned) process; its result."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(function, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    """Print the bytes per series (ours and the baseline's), per pushed row, and the flood."""
    grown, held = in_fresh_process(ours, SERIES)
    base, base_held = in_fresh_process(baseline, SERIES)
    print(f"per series:  {grown / held:7.0f} B  ({held} series, target <= 2048 B)")
    print(
        f"  baseline (a dict of label tuples to floats): {base / base_held:7.0f} B  "
        f"-> ours x{grown / held / (base / base_held):.2f}"
    )
    grown, held = in_fresh_process(rows, ROWS)
    print(f"per pushed row: {grown / held:7.0f} B  ({held} rows, 2 kinds, a full 60 s window)")
    grown, held, refused = in_fresh_process(flood)
    print(
        f"flood: {FLOOD} distinct label sets, max_series {FLOOD_CAP}: {held} held, "
        f"{refused} refused, RSS +{grown / 2**20:.1f} MiB "
        f"({grown / held:.0f} B per held series)"
    )


if __name__ == "__main__":
    main()
