"""WebSocket fan-out: many seed 002 clients subscribed to `all`, the gateway's cost per snapshot.

python -m bench ws

A fleet process (15 agents recording events + the aggregator, 1 snapshot/s), the gateway as
users start it (`python -m gateway`), and a process of WebSocket clients (the `websockets`
library) each sending seed 002's `{"type": "subscribe", "metric_types": ["all"]}`: per snapshot
every client gets 33 items (system, 15 agent, 15 business, hero, presentation) in batches of
20. Measured: the gateway process's CPU per snapshot (from /proc) and the delivery lag of the
batch holding the `system` item (receive time - the round's end: timestamp +
collection_time_ms). Baseline in the same run: 1 client (what a snapshot costs the gateway
before any fan-out). No issue sets a target here; the figures say how the cost grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from bench.bench_gateway import BENCH_LIMITS, PYTHON, _process, _quantile, fleet, free_port

CLIENTS = 300
SECONDS = 20.0
SUBSCRIBE = '{"type": "subscribe", "metric_types": ["all"]}'


@contextlib.contextmanager
def gateway(aggregator: str) -> Iterator[tuple[int, int]]:
    """`python -m gateway` in its own process; yields (port, pid) once it is ready."""
    os.environ.update(BENCH_LIMITS)
    os.environ["METRICS_MESH_GATEWAY_MAX_WS_CLIENTS"] = str(CLIENTS + 50)
    port = free_port()
    command = [PYTHON, "-m", "gateway", "--port", str(port), "--aggregator", aggregator]
    with _process([*command, "--log-level", "warning"], port, "/health/ready") as process:
        yield port, process.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(url: str, lags: list[float], counts: dict[str, int], measuring: Any) -> None:
    import orjson
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None) as ws:
        counts["connected"] += 1
        await ws.send(SUBSCRIBE)
        async for raw in ws:
            received = time.time()
            message = orjson.loads(raw)
            if not measuring.is_set():
                continue
            counts["messages"] += 1
            if message["type"] != "metric_batch":
                continue
            first = message["data"][0]
            if first["metric_type"] == "system":
                data = first["data"]
                ended = datetime.fromisoformat(first["timestamp"]).timestamp()
                ended += data["collection_time_ms"] / 1000.0
                lags.append((received - ended) * 1000.0)


async def _clients_main(url: str, clients: int, seconds: float) -> dict[str, Any]:
    lags: list[float] = []
    counts = {"connected": 0, "messages": 0}
    measuring = asyncio.Event()
    tasks = []
    for _ in range(clients):
        tasks.append(asyncio.create_task(_client(url, lags, counts, measuring)))
        await asyncio.sleep(0.002)
    await asyncio.sleep(2.0)
    measuring.set()
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"lags": lags, **counts}


def _clients(url: str, clients: int, seconds: float, conn: Connection) -> None:
    import uvloop

    conn.send(uvloop.run(_clients_main(url, clients, seconds)))


def run_clients(url: str, clients: int, seconds: float, pid: int) -> dict[str, Any]:
    """Run `clients` in their own process; their result and the gateway's CPU meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_clients, args=(url, clients, seconds, child), daemon=True)
    process.start()
    try:
        time.sleep(2.0 + clients * 0.002)  # connecting and the first snapshots: not measured
        before = cpu_seconds(pid)
        if not parent.poll(seconds + 120):
            raise RuntimeError("the WebSocket clients did not finish")
        result: dict[str, Any] = parent.recv()
        result["gateway_cpu"] = cpu_seconds(pid) - before
        return result
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def main(argv: list[str] | None = None) -> None:
    """Print the gateway's CPU per snapshot and the lag, 1 client then CLIENTS clients."""
    clients_sizes = (1, CLIENTS)
    print(
        f"WS /ws/metrics, seed 002's subscribe to `all`, 1 snapshot/s, {SECONDS:g} s each; "
        "clients in their own process"
    )
    rows = []
    with fleet(1.0) as address, gateway(address) as (port, pid):
        url = f"ws://127.0.0.1:{port}/ws/metrics"
        for clients in clients_sizes:
            result = run_clients(url, clients, SECONDS, pid)
            lags = result["lags"]
            if not lags:
                raise RuntimeError(f"{clients} clients received no batches: {result}")
            snapshots = len(lags) / clients
            cpu_ms = result["gateway_cpu"] * 1000.0 / max(snapshots, 1.0)
            rows.append((clients, result["connected"], snapshots, cpu_ms, lags))
    print("  clients connected snapshots  gateway CPU/snapshot  per client   lag p50    p99")
    for clients, connected, snapshots, cpu_ms, lags in rows:
        p50, p99 = statistics.median(lags), _quantile(lags, 0.99)
        print(
            f"  {clients:7d} {connected:9d} {snapshots:9.1f} {cpu_ms:15.1f} ms"
            f" {cpu_ms / clients:9.3f} ms {p50:7.1f} {p99:6.1f} ms"
        )
    one, many = rows[0], rows[-1]
    per_client = many[3] / many[0]
    p99 = _quantile(many[4], 0.99)
    print(
        f"  => {CLIENTS} clients: {per_client:.3f} ms gateway CPU per snapshot per client, "
        f"x{many[3] / one[3]:.0f} the 1-client cost; lag p99 {p99:.0f} ms "
        f"(x{p99 / _quantile(one[4], 0.99):.0f} the 1-client p99)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
