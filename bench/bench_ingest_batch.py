"""Seed 003's batch ingestion through the gateway: metrics/s with batches of 1000, p99 per batch.

python -m bench ingest_batch

Three processes: the aggregator (no agents: the pushes are the load), the gateway started as
users start it (`python -m gateway`), and this one, posting seed 003's `{"metrics": [...]}`
bodies of 1000 gauges (1000 label sets of 10 metric names, new values each batch) one after
the other on one keep-alive connection, for `SECONDS`. Every batch must answer 201.

Baseline in the same run, on the same connection: `GET /health` (the gateway's cheapest route:
what a request costs with no body and no call to the aggregator), so the ratio of a batch's
time to it says what the ingestion itself costs. Each row also gives the gateway's and the
aggregator's CPU time per batch (Linux /proc), steadier than wall time on a shared machine.
Targets (issue 18): >= 20,000 metrics/s, p99 <= 100 ms per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import statistics
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

from bench.bench_gateway import _cpu_seconds, gateway, spawned

BATCH = 1000
SECONDS = 10.0
HEALTH_REQUESTS = 2000


def _aggregator(conn: Connection) -> None:
    asyncio.run(_aggregator_main(conn))


async def _aggregator_main(conn: Connection) -> None:
    import os

    from aggregator import AggregatorServer, AggregatorSettings, Registry
    from aggregator._ingest.settings import IngestSettings

    settings = AggregatorSettings(port=0, interval_seconds=1.0, deadline_seconds=0.5)
    server = AggregatorServer(Registry(()), settings, ingest=IngestSettings(otlp_port=-1))
    await server.start()
    conn.send((server.address, os.getpid()))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await server.stop(0)


@contextlib.contextmanager
def aggregator() -> Iterator[tuple[str, int]]:
    """An aggregator process; yields its address and pid."""
    with spawned(_aggregator, (), "the aggregator") as started:
        yield started


def batch_body(round_number: int) -> bytes:
    """Seed 003's batch of BATCH gauges, values new each round."""
    metrics = [
        {
            "name": f"bench_metric_{index % 10}",
            "type": "gauge",
            "value": float(round_number * BATCH + index),
            "labels": {"host": f"server{index:04d}", "region": "us-east-1"},
            "help_text": "A benchmark gauge",
            "unit": "percent",
        }
        for index in range(BATCH)
    ]
    return json.dumps({"metrics": metrics}).encode()


def _post_batches(port: int, seconds: float) -> list[float]:
    """Post batches for `seconds`; each one's time in ms."""
    bodies = [batch_body(n) for n in range(8)]
    connection = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    deadline = time.perf_counter() + seconds
    count = 0
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        connection.request("POST", "/api/v1/metrics/batch", bodies[count % len(bodies)], headers)
        response = connection.getresponse()
        answer = response.read()
        times.append((time.perf_counter() - started) * 1000.0)
        if response.status != 201:
            raise RuntimeError(f"batch answered {response.status}: {answer[:300]!r}")
        count += 1
    connection.close()
    return times


def _health(port: int, requests: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        times.append((time.perf_counter() - started) * 1000.0)
    connection.close()
    return times


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1] if len(times) > 1 else times[0]


def main() -> None:
    """Run the bench and print the figures."""
    with aggregator() as (address, aggregator_pid), gateway(address) as served:
        _post_batches(served.port, 1.0)  # warm-up: the series exist, the code paths are hot
        health = _health(served.port, HEALTH_REQUESTS)
        cpu_gateway, cpu_aggregator = _cpu_seconds(served.pid), _cpu_seconds(aggregator_pid)
        started = time.perf_counter()
        times = _post_batches(served.port, SECONDS)
        elapsed = time.perf_counter() - started
        cpu_gateway = _cpu_seconds(served.pid) - cpu_gateway
        cpu_aggregator = _cpu_seconds(aggregator_pid) - cpu_aggregator
    batches = len(times)
    rate = batches * BATCH / elapsed
    print("shared machine: compare ratios within this run, not absolute figures across runs")
    print(f"baseline GET /health: p50 {_p(health, 50):.2f} ms, p99 {_p(health, 99):.2f} ms")
    print(
        f"POST /api/v1/metrics/batch ({BATCH} gauges): {batches} batches in {elapsed:.1f} s, "
        f"{rate:,.0f} metrics/s (target >= 20,000)"
    )
    print(
        f"  per batch: p50 {_p(times, 50):.1f} ms, p99 {_p(times, 99):.1f} ms (target <= 100), "
        f"max {max(times):.1f} ms; p50 = {_p(times, 50) / _p(health, 50):.0f}x GET /health's"
    )
    print(
        f"  CPU per batch: gateway {cpu_gateway / batches * 1000:.1f} ms, "
        f"aggregator {cpu_aggregator / batches * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
