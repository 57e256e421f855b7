"""Helpers of the fleet tests: mesh files of real agents, a real aggregator process, snapshots.

`mesh_text()` writes a mesh file's `[aggregator]` and `[[services]]`; `aggregator_process()`
runs `python -m aggregator --config FILE` as a user would (its log in a file the test can
read), so a test can send it signals and check it is the same process before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from mesh_common.registry import ServiceEntry
from mesh_common.transport import open_channel
from tests.eventually import eventually

ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE


def services_text(entries: Iterable[ServiceEntry]) -> str:
    """`[[services]]` tables for `entries`, agents on their host and agent port."""
    lines: list[str] = []
    for entry in entries:
        lines += [
            "[[services]]",
            f'name = "{entry.name}"',
            f'host = "{entry.host}"',
            f"port = {entry.port}",
            f"agent_port = {entry.agent_port}",
            f'type = "{entry.type}"',
            f'data_source = "{entry.data_source}"',
            "",
        ]
    return "\n".join(lines)


def mesh_text(
    entries: Iterable[ServiceEntry],
    *,
    interval: float = 0.5,
    extra: str = "",
) -> str:
    """A mesh file: `[aggregator]` on port 0 with rounds every `interval`, then `entries`."""
    deadline = min(0.3, interval / 2)
    head = (
        f"[aggregator]\nport = 0\ninterval_seconds = {interval}\n"
        f"deadline_seconds = {deadline}\n\n{extra}\n"
    )
    return head + services_text(entries)


async def snapshot(address: str, *, fresh: bool = False) -> snapshot_pb2.Snapshot:
    """The latest snapshot (with `fresh`, one from a round of its own)."""
    request = aggregator_pb2.GetSnapshotRequest()
    if fresh:
        request.max_age.FromNanoseconds(0)
    async with open_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        response = await stub.GetSnapshot(request, timeout=10)
    return response.snapshot


def names(snap: snapshot_pb2.Snapshot) -> set[str]:
    """The service names of a snapshot's rows."""
    return {row.service_name for row in snap.services}


async def rows_become(
    address: str, wanted: set[str], *, timeout: float = 15
) -> snapshot_pb2.Snapshot:
    """The first latest snapshot whose rows are exactly `wanted`, each active."""

    async def probe() -> snapshot_pb2.Snapshot | None:
        snap = await snapshot(address)
        active = all(row.status == ACTIVE for row in snap.services)
        return snap if names(snap) == wanted and active else None

    return await eventually(probe, timeout=timeout, what=f"rows {sorted(wanted)}, all active")


@dataclass
class AggregatorProcess:
    """A running `python -m aggregator`: its process, address and log file."""

    process: asyncio.subprocess.Process
    address: str
    log: Path

    def log_text(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(encoding="utf-8")

    def signal(self, signum: int) -> None:
        """Send it `signum`."""
        self.process.send_signal(signum)


@contextlib.asynccontextmanager
async def aggregator_process(
    config: Path, *, extra_args: Sequence[str] = ()
) -> AsyncIterator[AggregatorProcess]:
    """`python -m aggregator --config config`, stopped with SIGTERM at the end."""
    log = config.with_suffix(".log")
    with log.open("w", encoding="utf-8") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aggregator", "--config", str(config), *extra_args,
            stderr=stderr,
        )  # fmt: skip
    try:

        def serving() -> str | None:
            if process.returncode is not None:
                raise AssertionError(f"the aggregator exited: {log.read_text()[-2000:]}")
            match = re.search(r"aggregator serving on (\S+)", log.read_text(encoding="utf-8"))
            return match.group(1) if match else None

        address = await eventually(serving, timeout=30, what="the aggregator's serving line")
        yield AggregatorProcess(process, address, log)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks(language: str) -> list[str]:
    """The fenced `language` blocks of the README's "A fleet that changes" section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## A fleet that changes\n")
    end = text.find("\n## ", start + 1)
    return re.findall(rf"```{language}\n(.*?)```", text[start:end], flags=re.DOTALL)
