"""A round of 200 services x 3 instances against one of 600 services of one agent.

python -m bench instances            # (about two minutes)
python -m bench.bench_instances

The same 600 agents' worth of work (in 2 worker processes, as bench_aggregator's), called
by a real aggregator: 600 services of one agent each (the baseline), then 200 services of 3
instances each (600 calls, then 200 rows folding 3 answers: counts added, buckets merged).
Both fleets answer with 3 timed kinds (buckets, errors) so the fold has buckets to merge.
Measured in the same run, interleaved, best of 2 each; target: the round within 10 % of the
baseline's. Also the conversion of a round's snapshot to its wire message (the streams'
one-off cost per round: bigger with the `instances` lists).
"""

from __future__ import annotations

import asyncio
import time

from aggregator import AggregatorServer, AggregatorSettings, Registry
from aggregator._convert import snapshot_to_proto
from bench.bench_aggregator import DEADLINE, agent_fleet

AGENTS = 600
INSTANCES = 3
ROUNDS = 40


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
    """Round p50 of 200 x 3 instances vs 600 x 1 (best of 2, interleaved)."""
    print(
        f"a round of {AGENTS // INSTANCES} services x {INSTANCES} instances vs {AGENTS} services "
        f"of one agent (3 timed kinds per agent; p50 of {ROUNDS} rounds, best of 2)"
    )
    results: dict[str, list[tuple[float, float, float, int]]] = {"600 x 1": [], "200 x 3": []}
    for _ in range(2):
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


def main() -> None:
    bench_instances()


if __name__ == "__main__":
    main()
