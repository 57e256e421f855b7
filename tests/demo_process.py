"""`metrics-mesh demo` as a user runs it: a real subprocess, its output read as it comes.

`running_demo(run_dir, *options)` starts it (with `--free-ports` and `--run-dir`), waits for
its "Press Ctrl-C" line, yields a `Demo` and stops whatever is left at the end (the SIGINT
test stops it itself). `Demo.paste_lines()` are the lines it printed under "Ready to paste:".
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from aggregator import AggregatorConfig, load_config
from gateway import GatewaySettings, load_settings
from mesh_common.transport import open_blocking_channel
from tests.cli import METRICS_MESH
from tests.eventually import eventually_sync
from tests.processes import descendants

CONFIG_FILE = "metrics-mesh.toml"


@dataclass
class Demo:
    """A running demo: its process, its run directory and every line it printed so far."""

    process: subprocess.Popen[str]
    run_dir: Path
    lines: list[str] = field(default_factory=list)

    def read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited before printing {text!r}:\n{self.output()}")
            return any(text in line for line in self.lines)

        eventually_sync(seen, timeout=timeout, what=f"{text!r} in the demo's output")

    def output(self) -> str:
        return "\n".join(self.lines)

    def paste_lines(self) -> list[str]:
        """The commands printed under "Ready to paste:", without their indent."""
        text = self.output()
        block = text[text.index("Ready to paste:") :].split("\n\n")[0].splitlines()[1:]
        return [line.strip() for line in block]

    @property
    def config_path(self) -> Path:
        return self.run_dir / CONFIG_FILE

    @property
    def config(self) -> AggregatorConfig:
        """The registry and aggregator settings of the config the demo generated."""
        return load_config(self.config_path, environ={})

    @property
    def gateway(self) -> GatewaySettings:
        return load_settings(self.config_path, environ={})

    def snapshot(self) -> snapshot_pb2.Snapshot:
        """One GetSnapshot from the demo's aggregator, plaintext (not for `--secure`)."""
        with open_blocking_channel(f"127.0.0.1:{self.config.aggregator.port}") as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            return stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest(), timeout=5).snapshot


@contextlib.contextmanager
def running_demo(
    run_dir: Path, *options: str, env: Mapping[str, str] | None = None, timeout: float = 90
) -> Iterator[Demo]:
    """`metrics-mesh demo --free-ports --run-dir RUN_DIR OPTIONS`, up until the block ends."""
    if not METRICS_MESH.exists():
        pytest.skip(f"{METRICS_MESH} is not installed (pip install -e .)")
    process = subprocess.Popen(
        [str(METRICS_MESH), "demo", "--free-ports", "--run-dir", str(run_dir), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    running = Demo(process, run_dir)
    reader = threading.Thread(target=running.read_output, daemon=True)
    reader.start()
    try:
        running.wait_for_line("Press Ctrl-C", timeout=timeout)
        yield running
    finally:
        if process.poll() is None:  # a test failed before stopping it: clean up anyway
            leftovers = descendants(process.pid)
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for pid in leftovers | {process.pid}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()
        reader.join(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
