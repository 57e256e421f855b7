"""A round of 200 services x 3 instances against one of 600 services of one agent.

python -m bench instances            # (about two minutes)
python -m bench.bench_instances [rounds | fold]

The same 600 agents' worth of work (in 2 worker processes, as bench_aggregator's), called
by a real aggregator: 600 services of one agent each (the baseline), then 200 services of 3
instances each (600 calls, then 200 rows folding 3 answers: counts added, buckets merged).
Both fleets answer with 3 timed kinds (buckets, errors) so the fold has buckets to merge.
Measured in the same run, interleaved, best of 3 each; target: the round within 10 % of the
baseline's. Also the conversion of a round's snapshot to its wire message (the streams'
one-off cost per round: bigger with the `instances` lists). `fold` times `fold_round` alone
on the same answers, without agents or network: the aggregator CPU the fold adds.
"""

from __future__ import annotations

import asyncio
import sys
import time

from agent import EventTracker
from agent._convert import reading_to_response
from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from aggregator.__main__ import tune_gc
from aggregator._convert import snapshot_to_proto
from aggregator._fanout import parse_figures
from aggregator._fold import Backoff, RoundTimes, fold_round
from aggregator._model import AgentFigures, CallResult, Health, Outcome, TargetKey
from bench.bench_aggregator import DEADLINE, _observe_three_kinds, agent_fleet

AGENTS = 600
INSTANCES = 3
ROUNDS = 40
RUNS = 3
"""Runs of each fleet, interleaved; the best p50 of each counts (a shared machine's noise)."""


async def _rounds(registry: Registry, rounds: int) -> tuple[float, float, float, int]:
    """(round p50 s, aggregator CPU s per round, wire conversion s, wire bytes) of `rounds`."""
    settings = AggregatorSettings(
        port=0,
        deadline_seconds=DEADLINE,
        interval_seconds=DEADLINE + 1,
        backoff_max_seconds=0,
        min_round_spacing_seconds=0,
    )
    async with AggregatorServer(registry, settings) as server:
        tune_gc()  # as the aggregator process does once its server has started
        loop = server.loop
        for _ in range(3):
            await loop.snapshot(0)  # connect, and every health watch's first answer
        samples = []
        cpu = time.process_time()
        for _ in range(rounds):
            started = time.perf_counter()
            snapshot = await loop.snapshot(0)
            samples.append(time.perf_counter() - started)
        cpu = (time.process_time() - cpu) / rounds
        assert snapshot.services_answered == len(registry), snapshot.services_answered
        started = time.perf_counter()
        for _ in range(10):
            message = snapshot_to_proto(snapshot, snapshot.rows)
        convert = (time.perf_counter() - started) / 10
    samples.sort()
    return samples[len(samples) // 2], cpu, convert, message.ByteSize()


def bench_instances() -> None:
    """Round p50 of 200 x 3 instances vs 600 x 1 (best of RUNS, interleaved)."""
    print(
        f"a round of {AGENTS // INSTANCES} services x {INSTANCES} instances vs {AGENTS} services "
        f"of one agent (3 timed kinds per agent; p50 of {ROUNDS} rounds, best of {RUNS})"
    )
    results: dict[str, list[tuple[float, float, float, int]]] = {"600 x 1": [], "200 x 3": []}
    for _ in range(RUNS):
        for name, group in (("600 x 1", 1), ("200 x 3", INSTANCES)):
            with agent_fleet(AGENTS, timed=True, group=group) as registry:
                results[name].append(asyncio.run(_rounds(registry, ROUNDS)))
    for name, runs in results.items():
        p50, cpu, convert, size = min(runs)
        print(
            f"  {name}: round p50 {p50 * 1e3:7.2f} ms  aggregator cpu/round {cpu * 1e3:6.1f} ms  "
            f"wire snapshot {convert * 1e3:6.2f} ms ({size / 1024:.0f} KiB)  "
            f"[runs: {', '.join(f'{run[0] * 1e3:.1f}' for run in runs)} ms]"
        )
    base, several = min(results["600 x 1"]), min(results["200 x 3"])
    ratio = several[0] / base[0]
    verdict = "ok" if ratio <= 1.10 else "MISSED"
    print(
        f"  => 200 x 3 / 600 x 1 round p50 x{ratio:.2f} (target <= 1.10: {verdict}); cpu "
        f"x{several[1] / base[1]:.2f}; wire snapshot x{several[2] / base[2]:.2f}",
        flush=True,
    )


def _answer(name: str, index: int) -> AgentFigures:
    """The figures of an agent of `name` with 3 timed kinds, as a round parses them."""
    tracker = EventTracker(name)
    tracker.record(n=index + 1)
    _observe_three_kinds(tracker, index)
    return parse_figures(reading_to_response(tracker.read()).SerializeToString())


def bench_fold(repeats: int = 30) -> None:
    """fold_round alone: 600 services of one agent vs 200 of 3 instances (best of `repeats`)."""
    single = Registry(
        ServiceEntry(f"svc-{i}", "127.0.0.1", 20000 + i, 30000 + i, "core") for i in range(AGENTS)
    )
    several = Registry(
        ServiceEntry(
            f"svc-{i}",
            "127.0.0.1",
            20000 + i,
            30000 + INSTANCES * i,
            "core",
            instances=tuple(f"127.0.0.1:{30000 + INSTANCES * i + k}" for k in range(INSTANCES)),
        )
        for i in range(AGENTS // INSTANCES)
    )
    ones: dict[TargetKey, Outcome] = {}
    for index, entry in enumerate(single):
        ones[entry.name] = Outcome(
            CallResult.OK, Health.SERVING, 0.001, _answer(entry.name, index), received_at=1.0
        )
    threes: dict[TargetKey, Outcome] = {}
    for entry in several:
        for index, address in enumerate(entry.instances):
            threes[(entry.name, address)] = Outcome(
                CallResult.OK, Health.SERVING, 0.001, _answer(entry.name, index), received_at=1.0
            )
    times, backoff = RoundTimes(1, 1.7e9, 0.0, 0.01), Backoff(1.0, 30.0)
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, registry, outcomes in (("600 x 1", single, ones), ("200 x 3", several, threes)):
            started = time.perf_counter()
            fold_round(registry, outcomes, {}, times, backoff)
            took = time.perf_counter() - started
            best[name] = min(best.get(name, took), took)
    print(
        f"fold_round alone (3 timed kinds per agent, best of {repeats}): 600 x 1 "
        f"{best['600 x 1'] * 1e3:.1f} ms, 200 x 3 {best['200 x 3'] * 1e3:.1f} ms "
        f"(x{best['200 x 3'] / best['600 x 1']:.2f}; "
        f"{(best['200 x 3'] - best['600 x 1']) / (AGENTS // INSTANCES) * 1e6:.0f} us more per "
        "service of 3)",
        flush=True,
    )


PARTS = {"rounds": bench_instances, "fold": bench_fold}


def main() -> None:
    for part in PARTS.values():
        part()


if __name__ == "__main__":
    for name in sys.argv[1:] or PARTS:
        PARTS[name]()
