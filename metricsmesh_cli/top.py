"""`metrics-mesh top`: a live table of the fleet, fed by StreamSnapshots, refreshed in place.

The header names the aggregator, the filters in use (`--type`, `--service`: how many services
pass them; `--interval`) and the firing and pending alerts; the footer lists the keys, `r`
rate, `e` errors, `l` p99 latency, `n` name (the current order marked ▼/▲), `i` instances
(when a service of several instances is shown: each instance gets a line under its
service's row, marked while on), `q` quits, and repeats the filters. Active
services come first in every order but name, in the spirit of `linkerd viz top`. On a
terminal, keys are read in cbreak mode (no echo, Ctrl-C still a signal) and the terminal
settings are put back however top ends. `q`, Ctrl-C and SIGTERM quit cleanly with status 0,
leaving the last frame on screen; when the aggregator ends the stream, top says so and exits
with status 1. A request the aggregator refuses (INVALID_ARGUMENT: an unknown `--service` or
`--type`) exits with status 2, its message on stderr and nothing on stdout. Every line fits
the terminal's width (80 columns included): the table drops its least important columns
first, and the notes are cut rather than wrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import time
import tty
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from mesh_common.addresses import HostPort
from mesh_common.auth_client import bearer_interceptors
from mesh_common.errors import EXIT_FAILURE, EXIT_OK
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel
from mesh_common.wire_time import duration
from metricsmesh_cli.alerts import AlertCounts
from metricsmesh_cli.client import describe_rpc_error, snapshot_filter
from metricsmesh_cli.render import snapshot_view
from metricsmesh_cli.snapshot import refusal_status
from metricsmesh_cli.sorting import BY_RATE, ORDERS, RowOrder

STREAM_ENDED_STATUS = EXIT_FAILURE
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
QUIT_KEYS = frozenset("qQ")
INSTANCES_KEY = "i"
"""Shows (or hides again) a line per instance under each service of several instances."""
FIRST_ANSWER_SECONDS = 1.0
"""How long top waits for the aggregator's first answer before it shows the waiting frame.

A refusal (INVALID_ARGUMENT for an unknown `--service` or `--type`) comes at once, so it ends
top before anything is written to stdout.
"""


def stream_request(
    services: Sequence[str] = (), types: Sequence[str] = (), interval: float = 0.0
) -> aggregator_pb2.StreamSnapshotsRequest:
    """The StreamSnapshots request of `top`: the filter, and the least interval when > 0."""
    request = aggregator_pb2.StreamSnapshotsRequest(filter=snapshot_filter(services, types))
    if interval > 0:
        request.min_interval.CopyFrom(duration(interval))
    return request


def filters_text(services: Sequence[str], types: Sequence[str]) -> str:
    """`type=core,data service=weather-api`, or `all services` without a filter."""
    parts = [
        f"type={','.join(types)}" if types else "",
        f"service={','.join(services)}" if services else "",
    ]
    return " ".join(part for part in parts if part) or "all services"


@dataclass(slots=True)
class TopScreen:
    """What top shows: the filters (header and footer), the current order, the last snapshot."""

    target: HostPort
    services: Sequence[str] = ()
    types: Sequence[str] = ()
    interval: float = 0.0
    order: RowOrder = BY_RATE
    alerts: AlertCounts = field(default_factory=AlertCounts)
    snapshot: snapshot_pb2.Snapshot | None = None
    shown: int = 0
    """How many snapshots were shown."""
    token: str = ""
    """The bearer token the calls carry (`[auth] client_token`; '' = none)."""
    instances: bool = False
    """Whether each instance of a service of several has a line of its own (key `i`)."""

    def shown_filters(self) -> str:
        """The filters, after how many services of the fleet pass them (`4 of 15: type=core`)."""
        text = filters_text(self.services, self.types)
        if self.snapshot is not None and (self.services or self.types):
            text = f"{len(self.snapshot.services)} of {self.snapshot.services_total}: {text}"
        return text

    def header(self, width: int) -> Text:
        """`top 127.0.0.1:50100 · 4 of 15: type=core · every 2s · ALERTS 0 firing · 0 pending`.

        The filters are cut (…) before the alert counts are: those always show.
        """
        alerts = self.alerts.line()
        every = f" · every {self.interval:g}s" if self.interval > 0 else ""
        prefix = f"top {self.target} · "
        room = width - len(prefix) - len(every) - len(" · ") - alerts.cell_len
        filters = self.shown_filters()
        if len(filters) > max(room, 1):
            filters = filters[: max(room - 1, 0)] + "…"
        text = Text(prefix, style="bold")
        text.append(f"{filters}{every} · ")
        text.append_text(alerts)
        text.no_wrap, text.overflow = True, "ellipsis"
        return text

    def footer(self) -> Text:
        """`sort: r rate▼ · e errors · l p99 · n name · q quits │ 4 of 15: type=core`.

        `i instances` comes before `q quits` while a service of several instances is shown.
        """
        text = Text("sort: ", style="dim")
        for order in ORDERS.values():
            if order is self.order:
                mark = "▼" if order.descending else "▲"
                text.append(f"{order.key} {order.label}{mark}", style="bold reverse")
            else:
                text.append(f"{order.key} {order.label}", style="dim")
            text.append(" · ", style="dim")
        if self.instances or self._has_instances():
            style = "bold reverse" if self.instances else "dim"
            text.append(f"{INSTANCES_KEY} instances", style=style)
            text.append(" · ", style="dim")
        text.append(f"q quits │ {self.shown_filters()}", style="dim")
        text.no_wrap, text.overflow = True, "ellipsis"
        return text

    def _has_instances(self) -> bool:
        snapshot = self.snapshot
        return snapshot is not None and any(row.instances for row in snapshot.services)

    def render(self, width: int) -> Group | Text:
        """The whole frame for a terminal `width` columns wide."""
        if self.snapshot is None:
            waiting = Text(f"waiting for the first snapshot from {self.target} ...", style="dim")
            return Group(self.header(width), waiting, self.footer())
        view = snapshot_view(
            self.snapshot,
            order=self.order,
            now=time.time(),
            footer=self.footer(),
            one_line=True,
            width=width,
            instances=self.instances,
        )
        return Group(self.header(width), view)

    def press(self, key: str) -> bool:
        """Apply a key (an order, or `i`); True when the frame changed."""
        if key.lower() == INSTANCES_KEY:
            self.instances = not self.instances
            return True
        order = ORDERS.get(key.lower())
        if order is None or order is self.order:
            return False
        self.order = order
        return True


@dataclass(slots=True)
class _Interrupt:
    task: asyncio.Task[Any]
    requested: bool = False

    def request(self) -> None:
        """Stop top: cancel the task that runs it, remembering it was asked for."""
        self.requested = True
        self.task.cancel()


@contextlib.contextmanager
def _cancel_on_stop_signals() -> Iterator[_Interrupt]:
    """While inside, SIGINT/SIGTERM cancel the current task; `.requested` says one came."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    interrupt = _Interrupt(task)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, interrupt.request)
    try:
        yield interrupt
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _terminal_stdin() -> int | None:
    """The file descriptor of stdin when it is a terminal, else None (no keys are read)."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None
    return fd if os.isatty(fd) else None


@contextlib.contextmanager
def read_keys(on_key: Callable[[str], None]) -> Iterator[bool]:
    """While inside, each key typed on a terminal stdin calls `on_key`; True if there is one.

    The terminal is in cbreak mode meanwhile (keys arrive one by one and are not echoed;
    Ctrl-C still raises SIGINT), and its settings are restored on the way out.
    """
    fd = _terminal_stdin()
    if fd is None:
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd, termios.TCSANOW)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        for key in os.read(fd, 64).decode(errors="replace"):
            on_key(key)

    loop.add_reader(fd, readable)
    try:
        yield True
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _show_stream(
    request: aggregator_pb2.StreamSnapshotsRequest,
    console: Console,
    screen: TopScreen,
    count: int | None,
    interrupt: _Interrupt,
    tls: TlsSettings | None,
) -> bool:
    """Show every snapshot of the stream in place; True once `count` frames were shown.

    Nothing is shown before the aggregator's first answer (for `FIRST_ANSWER_SECONDS` at
    most): a refused request (an unknown `--service` or `--type`) raises its AioRpcError with
    nothing written to `console`.
    """
    interceptors = bearer_interceptors(screen.token)
    async with open_channel(screen.target, tls=tls, interceptors=interceptors) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        follower = asyncio.create_task(screen.alerts.follow(channel), name="top alerts")
        responses = aiter(stub.StreamSnapshots(request))
        first = asyncio.ensure_future(anext(responses, None))
        try:
            await asyncio.wait({first}, timeout=FIRST_ANSWER_SECONDS)
            if first.done():
                first.result()  # a refusal ends top here, before any frame
            with Live(screen.render(console.width), console=console, refresh_per_second=4) as live:

                def on_key(key: str) -> None:
                    if key in QUIT_KEYS:
                        interrupt.request()
                    elif screen.press(key):
                        live.update(screen.render(console.width), refresh=True)

                with read_keys(on_key):
                    return await _frames(first, responses, live, console, screen, count)
        finally:
            first.cancel()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


async def _frames(
    first: asyncio.Future[aggregator_pb2.StreamSnapshotsResponse | None],
    responses: AsyncIterator[aggregator_pb2.StreamSnapshotsResponse],
    live: Live,
    console: Console,
    screen: TopScreen,
    count: int | None,
) -> bool:
    """Render the first answer, then each snapshot of the stream; True after `count` frames."""
    response = await first
    while response is not None:
        screen.snapshot = response.snapshot
        live.update(screen.render(console.width), refresh=True)
        screen.shown += 1
        if count is not None and screen.shown >= count:
            return True
        response = await anext(responses, None)
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
    token: str = "",
    tls: TlsSettings | None = None,
) -> int:
    """Show snapshots from `target` (TLS with `tls`) until `q`, Ctrl-C, the end or `count` frames.

    Returns 0 after `q`, Ctrl-C/SIGTERM or `count` frames; 2 (EXIT_USAGE) when the aggregator
    refused the request as INVALID_ARGUMENT (an unknown `--service` or `--type`: its message,
    naming them and the known ones, goes to `errors` and nothing to `console`); 1 when the
    stream ended or failed otherwise (an unreachable aggregator included).
    """
    request = stream_request(services, types, interval)
    screen = TopScreen(target, services, types, interval, token=token)
    with _cancel_on_stop_signals() as interrupt:
        try:
            if await _show_stream(request, console, screen, count, interrupt, tls):
                return EXIT_OK
        except asyncio.CancelledError:
            if not interrupt.requested:
                raise
            errors.print(
                f"metrics-mesh top: stopped after {screen.shown} snapshot(s)", markup=False
            )
            return EXIT_OK
        except grpc.aio.AioRpcError as error:
            errors.print(
                f"metrics-mesh top: {describe_rpc_error(target, error, tls)}", markup=False
            )
            return refusal_status(error)
    errors.print(
        f"metrics-mesh top: the aggregator at {target} ended the stream after "
        f"{screen.shown} snapshot(s) (is it shutting down?)",
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
    token: str = "",
    tls: TlsSettings | None = None,
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
            token=token,
            tls=tls,
        )
    )
