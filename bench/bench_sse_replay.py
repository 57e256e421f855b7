"""SSE replays under load: how long a REST request waits while stalled clients ask `replay=100`.

python -m bench sse_replay

A fleet process (15 agents recording events + the aggregator, 5 rounds/s, so the gateway's
ring holds 100 snapshots after twenty seconds), the gateway as users start it (`python -m
gateway`), and, in this process, one REST client asking GET /api/v1/real-time-metrics every
10 ms. Baseline in the same run: the REST latency with no SSE client. Then 50 SSE clients
connect at once with `replay=100` and never read (stalled: their replay fills their socket
buffers), and the REST latency is measured again from the moment they connect. Every replayed
frame is made for its client alone (older snapshots are kept serialized), so the replays cost
the gateway 5000 frames: the figure says whether the REST client waits for all of them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx

from bench.bench_gateway import REST_PATH, _quantile, fleet, gateway

STALLED = 50
REPLAY = 100
ROUND_SECONDS = 0.2
PROBE_EVERY = 0.01
BASELINE_SECONDS = 3.0
LOADED_SECONDS = 5.0


async def rest_latencies(http: httpx.AsyncClient, seconds: float) -> list[float]:
    """Milliseconds of each GET of the REST path, one every PROBE_EVERY, for `seconds`."""
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await http.get(REST_PATH)
        latencies.append((time.perf_counter() - started) * 1000.0)
        if response.status_code != 200:
            raise RuntimeError(f"REST answered {response.status_code}: {response.text[:200]}")
        await asyncio.sleep(PROBE_EVERY)
    return latencies


async def stalled_client(port: int) -> asyncio.StreamWriter:
    """An SSE client asking for a replay of REPLAY snapshots that never reads a byte."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {REST_PATH}/stream?replay={REPLAY} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    return writer


async def wait_for_ring(http: httpx.AsyncClient) -> int:
    """The sequence of the latest snapshot, once the ring holds REPLAY snapshots or more."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = await http.get(REST_PATH)
        if response.status_code == 200 and response.json()["sequence"] > REPLAY + 5:
            return int(response.json()["sequence"])
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the ring did not reach {REPLAY} snapshots in 60 s")


async def measure(port: int) -> dict[str, list[float]]:
    """REST latencies with no SSE client (baseline), then with STALLED replaying clients."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        await wait_for_ring(http)
        baseline = await rest_latencies(http, BASELINE_SECONDS)
        writers = await asyncio.gather(*(stalled_client(port) for _ in range(STALLED)))
        try:
            loaded = await rest_latencies(http, LOADED_SECONDS)
        finally:
            for writer in writers:
                writer.transport.abort()
    return {"no SSE client (baseline)": baseline, f"{STALLED} stalled replay={REPLAY}": loaded}


def main() -> None:
    """Print the REST latency without and with the stalled replaying clients."""
    print(
        f"REST {REST_PATH} every {PROBE_EVERY * 1000:.0f} ms while {STALLED} stalled SSE clients "
        f"ask replay={REPLAY} (rounds every {ROUND_SECONDS:g} s, 15 services); "
        f"{os.cpu_count()} CPUs shared by the fleet, the gateway and the clients"
    )
    with fleet(ROUND_SECONDS) as address, gateway(address) as port:
        results = asyncio.run(measure(port))
    print(f"  {'load':32} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in results.items():
        print(
            f"  {name:32} {len(values):8d} {statistics.median(values):8.1f} "
            f"{_quantile(values, 0.99):8.1f} {max(values):8.1f}"
        )
    base, loaded = results.values()
    print(
        f"  => worst REST request under the replays: {max(loaded):.0f} ms, "
        f"x{max(loaded) / max(base):.1f} the baseline's worst"
    )


if __name__ == "__main__":
    main()
