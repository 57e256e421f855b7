"""GET /api/v1/real-time-metrics/stream: Server-Sent Events fanned out from the one subscription.

Each event is `event: snapshot`, `id: <epoch>-<sequence>` and the REST body (of the client's
view) as `data:`; the epoch names the aggregator lifetime, so ids stay unique across its
restarts. When the client missed snapshots (a resume point of an earlier lifetime or older than
any history, an aggregator restart while connected) an `event: gap` says so before the next
snapshot: `{"reason", "after", "resumed_at", "missed"}`. At most `max_sse_clients` streams
(503 beyond); each costs about 20 KB (its generator, buffers and pacing state).
Alerts of the view's services come as `event: alert` with the alert's JSON (no id):
the pending and firing ones when the stream opens, then every change. A reconnecting client
sends `Last-Event-ID` and gets every snapshot after it from the gateway's ring, or from the
aggregator's history when the ring does not reach back that far.
While no fresh snapshot exists the client gets one `event: error` with the REST error shape,
and snapshot events again once the aggregator is back. Comment lines keep idle connections open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, NamedTuple

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import StreamingResponse

from gateway._alerts import AlertEntry, AlertFeed
from gateway._errors import FilterError
from gateway._pacing import Pacer
from gateway._params import FieldsParam, ServicesParam, TypesParam
from gateway._state import GatewayState
from gateway._views import SnapshotEntry, View, json_bytes, late_filter_error, view_of_query
from mesh_common.bounded import quote, shorten
from mesh_common.wire_time import iso_utc

PATH = "/api/v1/real-time-metrics/stream"
RETRY_MS = 2000


MAX_LAST_EVENT_ID = 41
"""The longest Last-Event-ID accepted: two 20-digit numbers and a dash."""
_UINT64_MAX = 2**64 - 1


class ResumePoint(NamedTuple):
    """Where a client resumes: after `sequence` of aggregator lifetime `epoch` (0: unknown)."""

    epoch: int
    sequence: int


def event_id(entry: SnapshotEntry) -> str:
    """The SSE id of a snapshot: `EPOCH-SEQUENCE`, unique across aggregator restarts."""
    return f"{entry.epoch}-{entry.sequence}"


def frame(entry: SnapshotEntry, view: View, now: float) -> bytes:
    """One `snapshot` event."""
    head = b"id: %d-%d\nevent: snapshot\ndata: " % (entry.epoch, entry.sequence)
    return head + entry.body(view, now) + b"\n\n"


def gap_frame(
    reason: str, after: ResumePoint, entry: SnapshotEntry | None, missed: int | None
) -> bytes:
    """One `gap` event: snapshots between `after` and `entry` were missed, and why."""
    body = {
        "reason": reason,
        "after": f"{after.epoch}-{after.sequence}",
        "resumed_at": None if entry is None else event_id(entry),
        "missed": missed,
    }
    return b"event: gap\ndata: " + json_bytes(body) + b"\n\n"


def live_gap(state: GatewayState, sent: ResumePoint | None, entry: SnapshotEntry) -> bytes:
    """The `gap` event due before a live `entry` when the client missed snapshots, else b""."""
    if sent is None:
        return b""
    epoch = entry.epoch
    if sent.epoch not in (0, epoch):
        return gap_frame("the aggregator restarted (a new epoch)", sent, entry, None)
    found, missed = state.hub.gap_between(epoch, sent.sequence, entry.sequence)
    if found:
        return gap_frame("the gateway missed snapshots from the aggregator", sent, entry, missed)
    return b""


def alert_frame(entry: AlertEntry) -> bytes:
    """One `alert` event: the alert as JSON (no id: ids are snapshot sequences)."""
    return b"event: alert\ndata: " + entry.encoded() + b"\n\n"


async def backlog(
    state: GatewayState, resume: ResumePoint | None, replay: int
) -> tuple[list[SnapshotEntry], bytes]:
    """What a new client gets first, and the `gap` event to send before it (or b"").

    Everything after the resume point, or the last `replay` snapshots. A resume point of
    another aggregator lifetime resumes from the start of this one's history, with a gap
    event; so does one that neither the ring nor the aggregator's history reaches back to.
    """
    hub = state.hub
    if resume is None:
        return (hub.history()[-replay:] if replay else []), b""
    latest, epoch = hub.latest, hub.epoch
    after = resume.sequence
    foreign = latest is not None and (
        resume.epoch not in (0, epoch) or resume.sequence > latest.sequence
    )
    if foreign:
        after = 0
    entries = hub.history_after(after)
    if entries is None:
        ring = hub.history()
        older = (
            [old async for old in hub.replay_from_aggregator(after, ring[0].sequence)]
            if ring
            else []
        )
        entries = older + ring
    first = entries[0] if entries else None
    if foreign:
        return entries, gap_frame("the aggregator restarted (a new epoch)", resume, first, None)
    if first is not None and first.sequence > after + 1:
        missed = first.sequence - after - 1
        return entries, gap_frame("older than the history kept", resume, first, missed)
    return entries, b""


def filter_error_frame(error: FilterError) -> bytes:
    """The `error` event of a filter naming what no snapshot has: `{"status": 422, "detail"}`."""
    body = json_bytes({"status": 422, "detail": shorten(str(error))})
    return b"event: error\ndata: " + body + b"\n\n"


async def events(
    state: GatewayState,
    view: View,
    interval: float,
    after: ResumePoint | None,
    replay: int,
    *,
    unchecked: bool = False,
) -> AsyncIterator[bytes]:
    """The event stream of one client: retry hint, backlog, then live snapshots and errors.

    A `gap` event comes before the first snapshot after any the client missed. A view made
    before the first snapshot (`unchecked`) is checked against it: a name or type it does not
    have ends the stream with an `error` event (status 422, as the request would get now).
    """
    monotonic = state.clocks.monotonic

    def refused(entry: SnapshotEntry) -> bytes | None:
        """The error event when `entry` lacks a name of the unchecked view (checked once)."""
        nonlocal unchecked
        if not unchecked:
            return None
        unchecked = False
        error = late_filter_error(view, entry)
        return None if error is None else filter_error_frame(error)

    state.stats.sse_clients += 1
    try:
        yield b"retry: %d\n\n" % RETRY_MS
        pacer = Pacer(state, interval)
        entries, gap = await backlog(state, after, replay)
        if gap:
            yield gap
        sent = after
        for entry in entries:
            if (refusal := refused(entry)) is not None:
                yield refusal
                return
            yield frame(entry, view, monotonic())
            pacer.mark_sent(entry)
            sent = ResumePoint(entry.epoch, entry.sequence)
        heartbeat = state.settings.heartbeat_seconds
        last_send = monotonic()
        alerts = AlertFeed(state.alerts, current=True)
        while True:
            changed = alerts.take(view.services.keeps)
            if changed:
                yield b"".join(alert_frame(entry) for entry in changed)
                last_send = monotonic()
            # Alert changes and the hub's ticks wake the one event every client waits on.
            update = await pacer.next(wake=True)
            now = monotonic()
            if update is None:
                if now < last_send + heartbeat:
                    continue  # a tick or an alert change: alerts go out at the top
                yield b": heartbeat " + iso_utc(state.clocks.wall()).encode() + b"\n\n"
            elif update.entry is None:
                yield b"event: error\ndata: " + state.error_body(now) + b"\n\n"
            else:
                # One frame per snapshot and view, shared by every client (its
                # snapshot_age_ms is the age when the first client got it).
                entry = update.entry
                if (refusal := refused(entry)) is not None:
                    yield refusal
                    return
                gap = live_gap(state, sent, entry)
                if gap:
                    yield gap
                sent = ResumePoint(entry.epoch, entry.sequence)
                yield entry.cached(view, partial(frame, entry, view, now))
            last_send = now
    finally:
        state.stats.sse_clients -= 1


def parse_last_event_id(value: str | None) -> ResumePoint | None:
    """The point a client resumes after: `EPOCH-SEQUENCE` (or a bare SEQUENCE, epoch 0).

    Anything else (non-ASCII digits, too long, beyond 64 bits) is HTTPException(400) with a
    short message.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    parts = text.split("-") if len(text) <= MAX_LAST_EVENT_ID else []
    if not 1 <= len(parts) <= 2 or not all(
        part.isascii() and part.isdigit() and len(part) <= 20 for part in parts
    ):
        raise HTTPException(
            400,
            f"Last-Event-ID {quote(value, 40)} is not EPOCH-SEQUENCE (decimal numbers, at most "
            f"{MAX_LAST_EVENT_ID} characters)",
        )
    numbers = [int(part) for part in parts]
    if any(number > _UINT64_MAX for number in numbers):
        raise HTTPException(400, "Last-Event-ID: the numbers must fit in 64 bits")
    return ResumePoint(0, numbers[0]) if len(numbers) == 1 else ResumePoint(*numbers)


def sse_router(state: GatewayState) -> APIRouter:
    """The SSE endpoint."""
    router = APIRouter(tags=["metrics"])

    @router.get(
        PATH,
        response_class=StreamingResponse,
        summary="Live snapshots as Server-Sent Events",
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        services: ServicesParam = None,
        types: TypesParam = None,
        fields: FieldsParam = None,
        interval: Annotated[
            float, Query(ge=0.0, le=3600.0, description="Least seconds between two events.")
        ] = 0.0,
        replay: Annotated[
            int, Query(ge=0, le=100_000, description="Send this many recent snapshots first.")
        ] = 0,
        last_event_id: Annotated[
            str | None,
            Header(description="Resume after this EPOCH-SEQUENCE id (set by EventSource)."),
        ] = None,
    ) -> StreamingResponse:
        """Snapshots as they complete: `event: snapshot` (id EPOCH-SEQUENCE), `event: gap`, ...

        `event: gap` tells of missed snapshots, `event: error` of an unreachable aggregator.
        """
        cap = state.settings.max_sse_clients
        if state.stats.sse_clients >= cap:
            raise HTTPException(
                503,
                f"too many SSE clients: the limit is {cap} (max_sse_clients); retry later",
                headers={"Retry-After": str(RETRY_MS // 1000)},
            )
        latest = state.hub.latest
        try:
            view = view_of_query(latest, services, types, fields)
        except FilterError as error:
            raise HTTPException(422, shorten(str(error))) from error
        after = parse_last_event_id(last_event_id)
        replay = min(replay, state.settings.history_size)
        return StreamingResponse(
            events(state, view, interval, after, replay, unchecked=latest is None),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
