"""Errors and latency benchmarks: observe() against prometheus_client's Histogram.observe(),
record() against the tracker before errors and latency existed, memory per timed kind, the
quantile error table and the GetEventRate answer with 3 timed kinds.

python -m bench latency
Ratios are against baselines measured in the same run: prometheus_client's Histogram with its
default buckets, and the agent tracker of commit BASELINE_REV (loaded from git into a module
of its own), so both trackers run in the same process under the same load.
"""

from __future__ import annotations

import gc
import importlib.util
import math
import random
import subprocess
import sys
import threading
import time
import timeit
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

from ddsketch import DDSketch
from prometheus_client import CollectorRegistry, Histogram

from agent import EventTracker
from agent._convert import reading_to_response
from mesh_common import latency

ROOT = Path(__file__).resolve().parent.parent
BASELINE_REV = "9b38bfd"
"""main before the seams refactor and errors/latency: its record() is the one to keep."""

TARGET_OBSERVE_1_THREAD = 0.8  # x Histogram.observe
TARGET_OBSERVE_2_THREADS = 1.0
TARGET_RECORD = 1.05  # x the baseline tracker's record()
TARGET_BYTES_PER_TIMED_KIND = 16 * 1024
TARGET_ANSWER_US = 40.0


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def baseline_tracker_module() -> ModuleType | None:
    """agent/_tracker.py as it was at BASELINE_REV, or None when git cannot show it."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE_REV}:agent/_tracker.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("baseline_tracker", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_tracker"] = module
    exec(compile(source, f"{BASELINE_REV}:agent/_tracker.py", "exec"), module.__dict__)
    return module


def cases() -> dict[str, tuple[str, dict[str, Any]]]:
    """The calls compared: the statement timeit runs, and its globals."""
    histogram = Histogram("bench_seconds", "durations", registry=CollectorRegistry())
    tracker = EventTracker("bench", kinds=["api_call"])
    found: dict[str, tuple[str, dict[str, Any]]] = {
        "Histogram.observe()": ("observe(0.0123)", {"observe": histogram.observe}),
        "KindCounter.observe()": (
            "observe(0.0123)",
            {"observe": tracker.counter("api_call").observe},
        ),
        "KindCounter.record()": ("record()", {"record": tracker.counter("api_call").record}),
    }
    old = baseline_tracker_module()
    if old is not None:
        before = old.EventTracker("bench", kinds=["api_call"])
        found[f"record() at {BASELINE_REV}"] = (
            "record()",
            {"record": before.counter("api_call").record},
        )
    return found


def one_thread(number: int = 100_000, repeats: int = 15) -> dict[str, float]:
    """ns per call, single thread, best of `repeats` interleaved runs."""
    timers = {
        name: timeit.Timer(stmt, globals=names, timer=time.thread_time)
        for name, (stmt, names) in cases().items()
    }
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(repeats):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(number))
    return {name: seconds / number * 1e9 for name, seconds in best.items()}


def two_threads(number: int = 100_000, repeats: int = 9) -> dict[str, float]:
    """ns per call (process CPU / all calls) with 2 threads on one counter or histogram."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, (stmt, names) in cases().items():
            timer = timeit.Timer(stmt, globals=names)
            barrier = threading.Barrier(3)

            def work(timer: timeit.Timer = timer, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                timer.timeit(number)

            workers = [threading.Thread(target=work) for _ in range(2)]
            for worker in workers:
                worker.start()
            barrier.wait()
            started = time.process_time()
            for worker in workers:
                worker.join()
            best[name] = min(best.get(name, float("inf")), time.process_time() - started)
    return {name: seconds / (2 * number) * 1e9 for name, seconds in best.items()}


def print_calls(title: str, figures: dict[str, float], observe_target: float) -> None:
    histogram = figures["Histogram.observe()"]
    print(f"{title} (ns per call):")
    for name, ns in figures.items():
        line = f"  {name:<28} {ns:8.1f} ns"
        if name == "KindCounter.observe()":
            ratio = ns / histogram
            line += f"   {ratio:.2f}x Histogram.observe() (target <= {observe_target}x: "
            line += f"{verdict(ratio <= observe_target)})"
        old = figures.get(f"record() at {BASELINE_REV}")
        if name == "KindCounter.record()" and old:
            ratio = ns / old
            line += f"   {ratio:.2f}x record() at {BASELINE_REV} (target <= {TARGET_RECORD}x: "
            line += f"{verdict(ratio <= TARGET_RECORD)})"
        print(line)


def memory_per_timed_kind(kinds: int = 50) -> float:
    """Bytes per kind with steady timed traffic over 30 distinct buckets every second."""
    now = [0.0]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tracker = EventTracker("mem", clock=lambda: now[0])
        counters = [tracker.counter(f"kind_{i:02d}") for i in range(kinds)]
        for tick in range(130 * 30):  # 130 s: the windows and their slots are full
            now[0] = tick / 30
            seconds = 0.001 * 1.05 ** (tick % 30)
            for counter in counters:
                counter.observe(seconds, error=tick % 97 == 0)
        tracker.read()
        gc.collect()
        after = tracemalloc.take_snapshot()
        total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    del tracker, counters
    return total / kinds


DISTRIBUTIONS = {
    "uniform 1-500 ms": lambda rng: rng.uniform(0.001, 0.5),
    "log-normal (20 ms)": lambda rng: rng.lognormvariate(math.log(0.02), 1.2),
    "bimodal 5 ms / 1.5 s": lambda rng: (
        rng.gauss(0.005, 0.001) if rng.random() < 0.9 else rng.gauss(1.5, 0.2)
    ),
}


def quantile_table(count: int = 100_000) -> None:
    """Distribution x quantile: exact (nearest rank), ours, its relative error, DDSketch's."""
    print(
        f"quantile error, {count} durations each (bound {latency.RELATIVE_ERROR:.2%}; DDSketch "
        "with the same relative accuracy as an independent reference):"
    )
    print(f"  {'distribution':<22}{'q':>6}{'exact':>12}{'ours':>12}{'error':>9}{'ddsketch':>12}")
    worst = 0.0
    for name, draw in DISTRIBUTIONS.items():
        rng = random.Random(name)
        values = [max(2e-5, draw(rng)) for _ in range(count)]
        tracker = EventTracker("q", clock=lambda: 0.0)  # every duration in the window
        sketch = DDSketch(relative_accuracy=latency.RELATIVE_ERROR)
        for value in values:
            tracker.observe("call", value)
            sketch.add(value)
        histogram = tracker.read().latency
        assert histogram is not None
        ordered = sorted(values)
        for q in (0.5, 0.9, 0.95, 0.99, 0.999):
            exact = ordered[max(1, math.ceil(q * count)) - 1]
            ours = histogram.quantile(q) or 0.0
            error = abs(ours - exact) / exact
            worst = max(worst, error)
            theirs = sketch.get_quantile_value(q) or 0.0
            print(
                f"  {name:<22}{q:>6}{exact * 1e3:>10.3f}ms{ours * 1e3:>10.3f}ms"
                f"{error:>8.2%} {theirs * 1e3:>9.3f}ms"
            )
    print(
        f"  worst relative error {worst:.2%} (bound {latency.RELATIVE_ERROR:.2%}: "
        f"{verdict(worst <= latency.RELATIVE_ERROR)})"
    )


def answer_with_three_timed_kinds(number: int = 5000, repeats: int = 7) -> tuple[float, int]:
    """us per full GetEventRate answer (read + protobuf) and its size, 3 timed kinds."""
    tracker = EventTracker("answer")
    for index, kind in enumerate(("api_call", "data_fetch", "inference")):
        for event in range(3000):
            tracker.observe(kind, 0.002 * (1 + index) * 1.05 ** (event % 30), error=event % 40 == 0)
    timer = timeit.Timer(lambda: reading_to_response(tracker.read()), timer=time.thread_time)
    best = min(timer.timeit(number) for _ in range(repeats))
    size = len(reading_to_response(tracker.read()).SerializeToString())
    return best / number * 1e6, size


def main() -> None:
    print_calls("1 thread", one_thread(), TARGET_OBSERVE_1_THREAD)
    print_calls("2 threads", two_threads(), TARGET_OBSERVE_2_THREADS)
    per_kind = memory_per_timed_kind()
    print(
        f"memory per timed kind, steady traffic over 30 buckets a second: {per_kind:,.0f} B "
        f"(target <= {TARGET_BYTES_PER_TIMED_KIND:,} B: "
        f"{verdict(per_kind <= TARGET_BYTES_PER_TIMED_KIND)})"
    )
    quantile_table()
    micros, size = answer_with_three_timed_kinds()
    print(
        f"GetEventRate answer with 3 timed kinds: {micros:.1f} us, {size} B "
        f"(target <= {TARGET_ANSWER_US:.0f} us: {verdict(micros <= TARGET_ANSWER_US)})"
    )


if __name__ == "__main__":
    main()
