"""`metrics-mesh top`: a live table of the fleet, fed by StreamSnapshots, refreshed in place.

Rows are sorted by rate (busiest active service first), statuses in colour, in the spirit of
`linkerd viz top`. Ctrl-C (or SIGTERM) quits cleanly, leaving the last frame on screen; when
the aggregator ends the stream, top says so and exits with status 1.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Sequence

import grpc
from google.protobuf.duration_pb2 import Duration
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc
from rich.console import Console
from rich.live import Live
from rich.text import Text

from metricsmesh_cli.client import describe_rpc_error, snapshot_filter
from metricsmesh_cli.render import snapshot_view

STREAM_ENDED_STATUS = 1


def _waiting(target: str) -> Text:
    return Text(f"waiting for the first snapshot from {target} ...", style="dim")


async def watch(
    target: str,
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
    request = aggregator_pb2.StreamSnapshotsRequest(filter=snapshot_filter(services, types))
    if interval > 0:
        every = Duration()
        every.FromNanoseconds(round(interval * 1e9))
        request.min_interval.CopyFrom(every)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupt)
    filters = ", ".join(
        part
        for part in (
            f"type={','.join(types)}" if types else "",
            f"service={','.join(services)}" if services else "",
        )
        if part
    )
    footer = f"{target}  {filters or 'all services'}  sorted by rate  (Ctrl-C quits)"
    frames = 0
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            with Live(
                _waiting(target), console=console, refresh_per_second=4, transient=False
            ) as live:
                async for response in stub.StreamSnapshots(request):
                    live.update(
                        snapshot_view(
                            response.snapshot,
                            sort_rate=True,
                            now=time.time(),
                            footer=footer,
                            one_line=True,
                        ),
                        refresh=True,
                    )
                    frames += 1
                    if count is not None and frames >= count:
                        return 0
        errors.print(
            f"metrics-mesh top: the aggregator at {target} ended the stream after "
            f"{frames} snapshot(s) (is it shutting down?)",
            markup=False,
        )
        return STREAM_ENDED_STATUS
    except asyncio.CancelledError:
        if not interrupted:
            raise
        errors.print(f"metrics-mesh top: stopped after {frames} snapshot(s)", markup=False)
        return 0
    except grpc.aio.AioRpcError as error:
        errors.print(f"metrics-mesh top: {describe_rpc_error(target, error)}", markup=False)
        return STREAM_ENDED_STATUS
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_top(
    target: str,
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
