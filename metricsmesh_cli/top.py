"""`metrics-mesh top`: a live table of the fleet, fed by StreamSnapshots, refreshed in place.

Rows are sorted by rate (busiest active service first), statuses in colour, in the spirit of
`linkerd viz top`; the line above the table counts the firing and pending alerts. Ctrl-C (or
SIGTERM) quits cleanly, leaving the last frame on screen; when the aggregator ends the stream,
top says so and exits with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from mesh_common.addresses import HostPort
from mesh_common.errors import EXIT_FAILURE, EXIT_OK
from mesh_common.transport import open_channel
from mesh_common.wire_time import duration
from metricsmesh_cli.alerts import AlertCounts
from metricsmesh_cli.client import describe_rpc_error, snapshot_filter
from metricsmesh_cli.render import snapshot_view

STREAM_ENDED_STATUS = EXIT_FAILURE
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stream_request(
    services: Sequence[str] = (), types: Sequence[str] = (), interval: float = 0.0
) -> aggregator_pb2.StreamSnapshotsRequest:
    """The StreamSnapshots request of `top`: the filter, and the least interval when > 0."""
    request = aggregator_pb2.StreamSnapshotsRequest(filter=snapshot_filter(services, types))
    if interval > 0:
        request.min_interval.CopyFrom(duration(interval))
    return request


def footer_text(target: HostPort, services: Sequence[str], types: Sequence[str]) -> str:
    """The dim line under the table: where the data comes from and what is shown."""
    filters = ", ".join(
        part
        for part in (
            f"type={','.join(types)}" if types else "",
            f"service={','.join(services)}" if services else "",
        )
        if part
    )
    return f"{target}  {filters or 'all services'}  sorted by rate  (Ctrl-C quits)"


@dataclass(slots=True)
class _Interrupt:
    requested: bool = False


@contextlib.contextmanager
def _cancel_on_stop_signals() -> Iterator[_Interrupt]:
    """While inside, SIGINT/SIGTERM cancel the current task; `.requested` says one came."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    interrupt = _Interrupt()

    def stop() -> None:
        interrupt.requested = True
        task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop)
    try:
        yield interrupt
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


@dataclass(slots=True)
class _Frames:
    shown: int = 0


async def _show_stream(
    target: HostPort,
    request: aggregator_pb2.StreamSnapshotsRequest,
    console: Console,
    footer: str,
    count: int | None,
    frames: _Frames,
) -> bool:
    """Show every snapshot of the stream in place; True once `count` frames were shown."""
    waiting = Text(f"waiting for the first snapshot from {target} ...", style="dim")
    alerts = AlertCounts()
    async with open_channel(target) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        follower = asyncio.create_task(alerts.follow(channel), name="top alerts")
        try:
            with Live(waiting, console=console, refresh_per_second=4, transient=False) as live:
                return await _frames(stub, request, live, console, footer, count, frames, alerts)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


async def _frames(
    stub: aggregator_pb2_grpc.AggregatorServiceAsyncStub,
    request: aggregator_pb2.StreamSnapshotsRequest,
    live: Live,
    console: Console,
    footer: str,
    count: int | None,
    frames: _Frames,
    alerts: AlertCounts,
) -> bool:
    """Render each snapshot, the alert counts above it; True once `count` frames were shown."""
    async for response in stub.StreamSnapshots(request):
        view = snapshot_view(
            response.snapshot,
            sort_rate=True,
            now=time.time(),
            footer=footer,
            one_line=True,
            width=console.width,
        )
        live.update(Group(alerts.line(), view), refresh=True)
        frames.shown += 1
        if count is not None and frames.shown >= count:
            return True
    return False


async def watch(
    target: HostPort,
    console: Console,
    errors: Console,
    *,
    services: Sequence[str] = (),
    types: Sequence[str] = (),
    interval: float = 0.0,
    count: int | None = None,
) -> int:
    """Show snapshots from `target` until Ctrl-C, the stream's end or `count` frames.

    Returns 0 after Ctrl-C/SIGTERM or `count` frames, 1 when the stream ended or failed.
    """
    request = stream_request(services, types, interval)
    footer = footer_text(target, services, types)
    frames = _Frames()
    with _cancel_on_stop_signals() as interrupt:
        try:
            if await _show_stream(target, request, console, footer, count, frames):
                return EXIT_OK
        except asyncio.CancelledError:
            if not interrupt.requested:
                raise
            errors.print(
                f"metrics-mesh top: stopped after {frames.shown} snapshot(s)", markup=False
            )
            return EXIT_OK
        except grpc.aio.AioRpcError as error:
            errors.print(f"metrics-mesh top: {describe_rpc_error(target, error)}", markup=False)
            return STREAM_ENDED_STATUS
    errors.print(
        f"metrics-mesh top: the aggregator at {target} ended the stream after "
        f"{frames.shown} snapshot(s) (is it shutting down?)",
        markup=False,
    )
    return STREAM_ENDED_STATUS


def run_top(
    target: HostPort,
    console: Console,
    errors: Console,
    *,
    services: Sequence[str] = (),
    types: Sequence[str] = (),
    interval: float = 0.0,
    count: int | None = None,
) -> int:
    """Run `watch` on a fresh event loop; returns its exit status."""
    return asyncio.run(
        watch(
            target,
            console,
            errors,
            services=services,
            types=types,
            interval=interval,
            count=count,
        )
    )
