"""`python -m bench soak --minutes N`: the fault loop for N minutes (not run in CI).

Agents, the aggregator and the gateway run as separate processes (`python -m aggregator`,
`python -m gateway`). A loop injects faults one at a time: kill -9 and restart of an agent,
SIGSTOP and SIGCONT of an agent, and every fifth fault a restart of the aggregator. A gRPC
subscriber (resuming from its last epoch and sequence) and an SSE client watch. Printed at
the end: faults injected, time to detect and to recover (p50 / max), gaps told to each client
(silent gaps: sequences skipped without a gap flag), and the RSS of the aggregator and the
gateway at the start, after the history rings fill, and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from demo_fleet.steady_agent import SteadyAgent
from mesh_common.registry import DEFAULT_REGISTRY

ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
HISTORY_SECONDS = 60.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Watch:
    """What the clients saw."""

    status: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    grpc_gaps: int = 0
    silent_gaps: int = 0
    sse_gaps: int = 0
    last: tuple[int, int] | None = None


def spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


async def subscribe(address: str, watch: Watch) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        while True:
            request = aggregator_pb2.StreamSnapshotsRequest()
            if watch.last is not None:
                request.after_epoch, request.after_sequence = watch.last
            try:
                async for message in stub.StreamSnapshots(request):
                    snapshot = message.snapshot
                    if message.gap:
                        watch.grpc_gaps += 1
                    elif watch.last is not None and (
                        (snapshot.epoch == watch.last[0] and snapshot.sequence != watch.last[1] + 1)
                        or snapshot.epoch != watch.last[0]
                    ):
                        watch.silent_gaps += 1
                    watch.last = (snapshot.epoch, snapshot.sequence)
                    now = time.monotonic()
                    for row in snapshot.services:
                        watch.status.setdefault(row.service_name, []).append(
                            (now, row.status == ACTIVE)
                        )
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)


async def read_sse(url: str, watch: Watch) -> None:
    last: str | None = None
    async with httpx.AsyncClient(timeout=None) as http:
        while True:
            try:
                headers = {} if last is None else {"Last-Event-ID": last}
                async with http.stream("GET", url, headers=headers) as response:
                    async for line in response.aiter_lines():
                        if line == "event: gap":
                            watch.sse_gaps += 1
                        elif line.startswith("id: "):
                            last = line[4:]
            except httpx.HTTPError:
                await asyncio.sleep(0.2)


async def until(watch: Watch, name: str, active: bool, since: float, timeout: float) -> float:
    """Seconds from `since` until a snapshot shows `name` active (or not); inf on timeout."""
    while time.monotonic() - since < timeout:
        for at, state in reversed(watch.status.get(name, [])):
            if at < since:
                break
            if state is active:
                return at - since
        await asyncio.sleep(0.05)
    return float("inf")


def quantiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s"


async def soak(minutes: float, agent_count: int) -> None:
    ports = [free_port() for _ in range(agent_count)]
    aggregator_port, gateway_port = free_port(), free_port()
    config = Path(tempfile.mkdtemp()) / "mesh.toml"
    lines = [
        "[aggregator]",
        f"port = {aggregator_port}",
        f"history_seconds = {HISTORY_SECONDS}",
        "[gateway]",
        f"port = {gateway_port}",
        f'aggregator = "127.0.0.1:{aggregator_port}"',
        f"history_size = {int(HISTORY_SECONDS)}",
    ]
    for entry, port in zip(DEFAULT_REGISTRY, ports, strict=False):
        lines += [
            "[[services]]",
            f'name = "{entry.name}"',
            f"port = {entry.port}",
            f"agent_port = {port}",
            f'type = "{entry.type}"',
        ]
    config.write_text("\n".join(lines) + "\n")
    agents = [
        SteadyAgent(entry.name, port, per_tick=3)
        for entry, port in zip(DEFAULT_REGISTRY, ports, strict=False)
    ]
    for agent in agents:
        agent.start()
    aggregator = spawn(["-m", "aggregator", "--config", str(config)])
    gateway = spawn(["-m", "gateway", "--config", str(config)])
    watch = Watch()
    tasks = [
        asyncio.create_task(subscribe(f"127.0.0.1:{aggregator_port}", watch)),
        asyncio.create_task(
            read_sse(f"http://127.0.0.1:{gateway_port}/api/v1/real-time-metrics/stream", watch)
        ),
    ]
    started = time.monotonic()
    await asyncio.sleep(3)
    rss = {"start": (rss_mb(aggregator.pid), rss_mb(gateway.pid))}
    faults: dict[str, int] = {"kill -9": 0, "SIGSTOP": 0, "aggregator restart": 0}
    detect: list[float] = []
    recover: list[float] = []
    rng = random.Random(12)
    try:
        while time.monotonic() - started < minutes * 60:
            if "filled" not in rss and time.monotonic() - started > HISTORY_SECONDS + 5:
                rss["filled"] = (rss_mb(aggregator.pid), rss_mb(gateway.pid))
            if sum(faults.values()) % 5 == 4:
                faults["aggregator restart"] += 1
                aggregator.send_signal(signal.SIGTERM)
                aggregator.wait()
                aggregator = spawn(["-m", "aggregator", "--config", str(config)])
                await asyncio.sleep(3)
                continue
            agent = rng.choice(agents)
            kind = rng.choice(("kill -9", "SIGSTOP"))
            faults[kind] += 1
            at = time.monotonic()
            if kind == "kill -9":
                agent.kill()
            else:
                agent.signal(signal.SIGSTOP)
            detect.append(await until(watch, agent.name, False, at, 10))
            await asyncio.sleep(rng.uniform(2, 6))
            at = time.monotonic()
            if kind == "kill -9":
                agent.start()
            else:
                agent.signal(signal.SIGCONT)
            recover.append(await until(watch, agent.name, True, at, 15))
            await asyncio.sleep(1)
        rss["end"] = (rss_mb(aggregator.pid), rss_mb(gateway.pid))
    finally:
        for task in tasks:
            task.cancel()
        for agent in agents:
            agent.kill()
        for process in (aggregator, gateway):
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()
    print(f"soak: {minutes:g} min, {agent_count} agents")
    print("faults injected: " + ", ".join(f"{kind} {count}" for kind, count in faults.items()))
    print(f"time to detect:  {quantiles(detect)}")
    print(f"time to recover: {quantiles(recover)}")
    print("recoveries:", " ".join(f"{value:.2f}" for value in recover))
    print(
        f"gaps told: gRPC {watch.grpc_gaps}, SSE {watch.sse_gaps}; silent gaps: {watch.silent_gaps}"
    )
    for moment, (agg, gw) in rss.items():
        print(f"RSS {moment:>6}: aggregator {agg:.1f} MB, gateway {gw:.1f} MB")
    if "filled" in rss:
        agg0, gw0 = rss["filled"]
        agg1, gw1 = rss["end"]
        print(
            f"growth after the rings filled: aggregator {100 * (agg1 / agg0 - 1):+.1f} %, "
            f"gateway {100 * (gw1 / gw0 - 1):+.1f} %"
        )


def main(argv: list[str] | None = None) -> None:
    """Run the soak (`--minutes`, `--agents`)."""
    parser = argparse.ArgumentParser(prog="python -m bench soak")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=15)
    args = parser.parse_args(sys.argv[2:] if argv is None else argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(soak(args.minutes, min(args.agents, len(DEFAULT_REGISTRY))))
