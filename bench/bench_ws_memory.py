"""What a WebSocket client costs the gateway: resident memory and CPU per connected client.

python -m bench ws_memory

A fleet process (15 agents recording events + the aggregator, 1 snapshot/s), the gateway as
users start it (`python -m gateway`), and a process of 500 WebSocket clients (the
`websockets` library, which offers per-message deflate as browsers do), each subscribed to
`all` and reading (33 items per snapshot). Measured from /proc: the gateway's RSS after a
warm-up of 20 clients that came and went (the baseline, same run) and again with the 500
connected after 10 s of snapshots; the cost per client is the difference over 500. The
gateway's CPU over the last 6 s says what the connections cost per snapshot.

Compared in the same run: the same gateway with uvicorn's per-message deflate on (its default,
which the gateway had), a zlib compressor and decompressor per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import Iterator
from typing import Any

from bench.bench_gateway import BENCH_LIMITS, PYTHON, _process, fleet, free_port
from bench.bench_ws import SUBSCRIBE, cpu_seconds

CLIENTS = 500
WARM_UP_CLIENTS = 20
CONNECTED_SECONDS = 10.0
CPU_SECONDS = 6.0
WITH_DEFLATE = (
    "import functools, sys; import gateway.__main__ as main; "
    "main.uvicorn_config = functools.partial(main.uvicorn_config, ws_per_message_deflate=True); "
    "sys.exit(main.main(sys.argv[1:]))"
)
"""`python -m gateway` with uvicorn's per-message deflate on, as the gateway ran before."""


def rss_bytes(pid: int) -> int:
    """The resident set size of a process."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def gateway(aggregator: str, deflate: bool) -> Iterator[tuple[int, int]]:
    """The gateway in its own process; yields (port, pid) once it is ready."""
    os.environ.update(BENCH_LIMITS)
    os.environ["METRICS_MESH_GATEWAY_MAX_WS_CLIENTS"] = str(CLIENTS + WARM_UP_CLIENTS)
    port = free_port()
    start = [PYTHON, "-c", WITH_DEFLATE] if deflate else [PYTHON, "-m", "gateway"]
    command = [*start, "--port", str(port), "--aggregator", aggregator, "--log-level", "warning"]
    with _process(command, port, "/health/ready") as process:
        yield port, process.pid


async def _clients_main(url: str, clients: int, seconds: float) -> int:
    from websockets.asyncio.client import connect

    received = 0

    async def client() -> None:
        nonlocal received
        async with connect(url, max_size=None) as ws:
            await ws.send(SUBSCRIBE)
            async for _ in ws:
                received += 1

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(seconds)
    failed = [task for task in tasks if task.done() and task.exception() is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if failed:
        raise RuntimeError(f"{len(failed)} clients failed: {failed[0].exception()!r}")
    return received


def _clients(url: str, clients: int, seconds: float) -> None:
    import uvloop

    uvloop.run(_clients_main(url, clients, seconds))


def connected(url: str, clients: int, seconds: float) -> Any:
    """A process of `clients` connected for `seconds` (not yet joined)."""
    process = multiprocessing.get_context("spawn").Process(
        target=_clients, args=(url, clients, seconds), daemon=True
    )
    process.start()
    return process


def measure(aggregator: str, deflate: bool) -> dict[str, float]:
    """RSS after the warm-up, RSS and CPU with CLIENTS connected."""
    with gateway(aggregator, deflate) as (port, pid):
        url = f"ws://127.0.0.1:{port}/ws/metrics"
        warm_up = connected(url, WARM_UP_CLIENTS, 4.0)
        warm_up.join(30)
        time.sleep(2.0)  # the warm-up's connections closed
        baseline = rss_bytes(pid)
        clients = connected(url, CLIENTS, CONNECTED_SECONDS + 4.0)
        time.sleep(CONNECTED_SECONDS - CPU_SECONDS)
        before = cpu_seconds(pid)
        time.sleep(CPU_SECONDS)
        cpu = (cpu_seconds(pid) - before) / CPU_SECONDS
        loaded = rss_bytes(pid)
        clients.join(60)
        if clients.exitcode != 0:
            raise RuntimeError(f"the clients' process exited with {clients.exitcode}")
    return {"baseline": baseline, "loaded": loaded, "cpu": cpu}


def main() -> None:
    """Print the gateway's memory and CPU per WebSocket client, deflate off (as run) and on."""
    print(
        f"WS /ws/metrics: {CLIENTS} websockets clients subscribed to `all` (33 items per "
        f"snapshot, 1 snapshot/s); gateway RSS after {WARM_UP_CLIENTS} warm-up clients, then "
        f"with {CLIENTS} connected for {CONNECTED_SECONDS:g} s"
    )
    rows = {}
    with fleet(1.0) as address:
        for name, deflate in (("as run (no deflate)", False), ("per-message deflate", True)):
            rows[name] = measure(address, deflate)
    print(f"  {'gateway':22} {'RSS before':>11} {'RSS with':>11} {'per client':>11} {'CPU':>9}")
    for name, row in rows.items():
        per_client = (row["loaded"] - row["baseline"]) / CLIENTS
        print(
            f"  {name:22} {row['baseline'] / 2**20:8.1f} MB {row['loaded'] / 2**20:8.1f} MB "
            f"{per_client / 1024:8.1f} KB {row['cpu'] * 100:7.1f} %"
        )
    run, deflate = rows.values()
    cost = (run["loaded"] - run["baseline"]) / CLIENTS
    old = (deflate["loaded"] - deflate["baseline"]) / CLIENTS
    print(
        f"  => {cost / 1024:.0f} KB per WebSocket client ({CLIENTS}: "
        f"{cost * CLIENTS / 2**20:.0f} MB), x{cost / old:.2f} the cost with deflate; "
        f"CPU x{run['cpu'] / deflate['cpu']:.2f}"
    )


if __name__ == "__main__":
    main()
