"""What the demo fleet costs: start-up time, CPU of the whole fleet, stop time.

Two runs of `metrics-mesh demo --free-ports --no-misbehave`: the baseline with
`--load-scale 0` (15 idle services with their agents, the aggregator collecting every second,
the gateway subscribed) and the default load (`--load-scale 1`). CPU is the sum over every
process of the fleet, in % of one core, sampled over a fixed span once all 15 are active.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc

from aggregator import load_config
from mesh_common.transport import open_blocking_channel
from tests.processes import descendants

METRICS_MESH = Path(sys.executable).with_name("metrics-mesh")
SAMPLE_SECONDS = 10.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def start_demo(load_scale: float, run_dir: str) -> tuple[subprocess.Popen[str], threading.Thread]:
    """`metrics-mesh demo` on free ports, once it says it is up; and the thread reading it."""
    process = subprocess.Popen(
        [
            str(METRICS_MESH),
            "demo",
            "--free-ports",
            "--no-misbehave",
            "--load-scale",
            str(load_scale),
            "--run-dir",
            run_dir,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    up = threading.Event()
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "Press Ctrl-C" in line:
                up.set()
        up.set()  # the demo ended (it failed to start)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not up.wait(120) or process.poll() is not None:
        stop_demo(process, reader)
        raise RuntimeError("the demo did not come up:\n" + "".join(output[-20:]))
    return process, reader


def stop_demo(process: subprocess.Popen[str], reader: threading.Thread) -> float:
    """SIGINT, then wait; seconds until it exited (it is killed if it does not)."""
    started = time.perf_counter()
    try:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()
    return time.perf_counter() - started


def wait_all_active(stub: aggregator_pb2_grpc.AggregatorServiceStub, services: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        snapshot = stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest()).snapshot
        if snapshot.active_count == services:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {snapshot.active_count} active after 60 s")
        time.sleep(0.2)


def run(load_scale: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        process, reader = start_demo(load_scale, run_dir)
        try:
            ready = time.perf_counter() - started
            config = load_config(Path(run_dir) / "metrics-mesh.toml")
            with open_blocking_channel(f"127.0.0.1:{config.aggregator.port}") as channel:
                stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
                wait_all_active(stub, len(config.services))
                all_active = time.perf_counter() - started
                pids = descendants(process.pid) | {process.pid}
                before = cpu_seconds(pids)
                sample_start = time.perf_counter()
                time.sleep(SAMPLE_SECONDS)
                cpu = (cpu_seconds(pids) - before) / (time.perf_counter() - sample_start)
                rate = stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest()).snapshot
        finally:
            stopped = stop_demo(process, reader)
    return {
        "processes": float(len(pids)),
        "ready_s": ready,
        "all_active_s": all_active,
        "cpu_pct": cpu * 100,
        "events_per_second": rate.events_per_second,
        "stop_s": stopped,
    }


def main() -> None:
    if not METRICS_MESH.exists():
        print(f"skipped: {METRICS_MESH} is not installed (pip install -e .)")
        return
    print(f"machine: {os.cpu_count()} cores; CPU sampled over {SAMPLE_SECONDS:.0f} s per run")
    results = {}
    for label, scale in (("baseline --load-scale 0", 0.0), ("default --load-scale 1", 1.0)):
        figures = run(scale)
        results[label] = figures
        print(
            f"{label:<24} {figures['processes']:.0f} processes  up in {figures['ready_s']:.1f} s  "
            f"all 15 active at {figures['all_active_s']:.1f} s  "
            f"fleet CPU {figures['cpu_pct']:.1f} % of one core  "
            f"fleet rate {figures['events_per_second']:.0f} ev/s  "
            f"stopped in {figures['stop_s']:.2f} s",
            flush=True,
        )
    base, load = results.values()
    extra = load["cpu_pct"] - base["cpu_pct"]
    print(
        f"the workload adds {extra:.1f} % of one core "
        f"({load['cpu_pct'] / max(base['cpu_pct'], 0.01):.2f}x the idle fleet) for "
        f"{load['events_per_second']:.0f} ev/s: "
        f"{extra / max(load['events_per_second'], 1e-9) * 1000:.1f} % of a core per 1000 ev/s"
    )
