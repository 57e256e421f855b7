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
aggregator's history when the ring does not reach back that far. A stream opened anew (a
browser's with a fresh single-use ticket: a new EventSource cannot send the header) passes
the same id as `?last_event_id=`; both with different ids is a 400.
While no fresh snapshot exists the client gets one `event: error` with the REST error shape,
and snapshot events again once the aggregator is back. Comment lines keep idle connections open.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from functools import partial
from typing import Annotated, NamedTuple

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway._alerts import AlertEntry, AlertFeed
from gateway._pacing import Pacer
from gateway._params import FieldsParam, ServicesParam, TypesParam
from gateway._state import ClientStats, GatewayState
from gateway._views import SnapshotEntry, json_bytes, late_filter_error, view_of_query
from mesh_common.bounded import quote, shorten
from mesh_common.errors import FilterError
from mesh_common.views import View
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
) -> AsyncIterator[SnapshotEntry | bytes]:
    """What a new client gets first, one snapshot at a time, a `gap` event (bytes) before it.

    Everything after the resume point, or the last `replay` snapshots. A resume point of
    another aggregator lifetime resumes from the start of this one's history, with a gap
    event; so does one that neither the ring nor the aggregator's history reaches back to.
    Snapshots from the aggregator's history come as they arrive, never gathered first.
    """
    hub = state.hub
    if resume is None:
        for entry in hub.history()[-replay:] if replay else []:
            yield entry
        return
    latest, epoch = hub.latest, hub.epoch
    after = resume.sequence
    foreign = latest is not None and (
        resume.epoch not in (0, epoch) or resume.sequence > latest.sequence
    )
    if foreign:
        after = 0
    first = True
    async for entry in _entries_after(state, after):
        if first:
            first = False
            if foreign:
                yield gap_frame("the aggregator restarted (a new epoch)", resume, entry, None)
            elif entry.sequence > after + 1:
                missed = entry.sequence - after - 1
                yield gap_frame("older than the history kept", resume, entry, missed)
        yield entry
    if first and foreign:
        yield gap_frame("the aggregator restarted (a new epoch)", resume, None, None)


async def _entries_after(state: GatewayState, after: int) -> AsyncIterator[SnapshotEntry]:
    """The snapshots after sequence `after`: from the ring, or the aggregator's history first."""
    hub = state.hub
    entries = hub.history_after(after)
    if entries is None:
        entries = hub.history()
        if entries:
            async for older in hub.replay_from_aggregator(after, entries[0].sequence):
                yield older
    for entry in entries:
        yield entry


def filter_error_frame(error: FilterError) -> bytes:
    """The `error` event of a filter naming what no snapshot has: `{"status": 422, "detail"}`."""
    body = json_bytes({"status": 422, "detail": shorten(str(error))})
    return b"event: error\ndata: " + body + b"\n\n"


class ClientStream:
    """One SSE client's stream: its view and pacing, and the last snapshot it was sent.

    A view made before the first snapshot (`unchecked`) is checked against it: a name or
    type it does not have ends the stream (`ended`) with an `error` event (status 422, as the
    request would get now).
    """

    def __init__(
        self,
        state: GatewayState,
        view: View,
        interval: float,
        *,
        unchecked: bool,
        turns: asyncio.Lock,
    ) -> None:
        self.state = state
        self.view = view
        self.pacer = Pacer(state, interval)
        self.sent: ResumePoint | None = None
        """The last snapshot sent (or the client's resume point): where a gap is told from."""
        self.ended = False
        """True once the stream was refused: nothing more is sent."""
        self._unchecked = unchecked
        self._turns = turns
        """Held while a replayed frame is made: the clients' turns, shared by the app."""

    def refused(self, entry: SnapshotEntry) -> bytes | None:
        """The error event when `entry` lacks a name of the unchecked view (checked once)."""
        if not self._unchecked:
            return None
        self._unchecked = False
        error = late_filter_error(self.view, entry)
        if error is None:
            return None
        self.ended = True
        return filter_error_frame(error)

    async def replayed(self, after: ResumePoint | None, replay: int) -> AsyncIterator[bytes]:
        """The backlog's events, each snapshot's frame built only when the last one went out."""
        monotonic = self.state.clocks.monotonic
        self.sent = after
        async for item in backlog(self.state, after, replay):
            if isinstance(item, bytes):
                yield item
                continue
            if (refusal := self.refused(item)) is not None:
                yield refusal
                return
            # A replayed frame is made for this client alone (a compacted snapshot parsed
            # again): one at a time gateway-wide, each on a turn of the loop of its own, so
            # 50 clients replaying 100 never make other requests wait (python -m bench
            # sse_replay: the worst REST request meanwhile, 2.1 s built all at once, 0.03 to
            # 0.13 s one at a time, on a shared machine).
            async with self._turns:
                await asyncio.sleep(0)
                chunk = frame(item, self.view, monotonic())
            yield chunk
            self.pacer.mark_sent(item)
            self.sent = ResumePoint(item.epoch, item.sequence)

    async def live(self) -> AsyncIterator[bytes]:
        """Alert changes, snapshots as they come, errors and heartbeats, until refused."""
        state, view = self.state, self.view
        monotonic = state.clocks.monotonic
        heartbeat = state.settings.heartbeat_seconds
        last_send = monotonic()
        alerts = AlertFeed(state.alerts, current=True)
        while True:
            changed = alerts.take(view.services.keeps)
            if changed:
                yield b"".join(alert_frame(entry) for entry in changed)
                last_send = monotonic()
            # Alert changes and the hub's ticks wake the one event every client waits on.
            update = await self.pacer.next(wake=True)
            now = monotonic()
            if update is None:
                if now < last_send + heartbeat:
                    continue  # a tick or an alert change: alerts go out at the top
                yield b": heartbeat " + iso_utc(state.clocks.wall()).encode() + b"\n\n"
            elif update.entry is None:
                yield b"event: error\ndata: " + state.error_body(now) + b"\n\n"
            else:
                yield self._live_snapshot(update.entry, now)
                if self.ended:
                    return
            last_send = now

    def _live_snapshot(self, entry: SnapshotEntry, now: float) -> bytes:
        """A live snapshot's frame, after the `gap` event when the client missed some."""
        refusal = self.refused(entry)
        if refusal is not None:
            return refusal
        gap = live_gap(self.state, self.sent, entry)
        self.sent = ResumePoint(entry.epoch, entry.sequence)
        # One frame per snapshot and view, shared by every client (its snapshot_age_ms is
        # the age when the first client got it).
        shared = entry.cached(self.view, partial(frame, entry, self.view, now))
        return gap + shared if gap else shared


async def events(
    state: GatewayState,
    view: View,
    interval: float,
    after: ResumePoint | None,
    replay: int,
    *,
    unchecked: bool = False,
    turns: asyncio.Lock | None = None,
) -> AsyncGenerator[bytes, None]:
    """The event stream of one client: retry hint, backlog, then live snapshots and errors.

    A `gap` event comes before the first snapshot after any the client missed. A view made
    before the first snapshot (`unchecked`) is checked against it: a name or type it does not
    have ends the stream with an `error` event (status 422, as the request would get now).
    Replayed frames are made one at a time among the streams sharing `turns` (the app's).
    """
    stream = ClientStream(state, view, interval, unchecked=unchecked, turns=turns or asyncio.Lock())
    yield b"retry: %d\n\n" % RETRY_MS
    async for chunk in stream.replayed(after, replay):
        yield chunk
    if stream.ended:
        return
    async for chunk in stream.live():
        yield chunk


class Admission:
    """One SSE client's place under `max_sse_clients`, taken when its request is admitted.

    Taken in the route, before any await, so a burst of requests cannot all pass the check
    before the first stream starts; `release()` gives it back once, however the response ends.
    """

    __slots__ = ("_stats",)

    def __init__(self, stats: ClientStats) -> None:
        stats.sse_clients += 1
        self._stats: ClientStats | None = stats

    def release(self) -> None:
        """Give the place back (a second call does nothing)."""
        if self._stats is not None:
            self._stats.sse_clients -= 1
            self._stats = None


class EventStreamResponse(StreamingResponse):
    """An admitted client's `text/event-stream`: its place is given back when the response ends.

    Whether it ends normally, by the client leaving (before the first byte too) or by an
    exception, and, should it never be sent at all, when the response is collected.
    """

    def __init__(self, body: AsyncGenerator[bytes, None], admission: Admission) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._body = body
        self._admission = admission
        weakref.finalize(self, admission.release)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the events; then give the client's place back and close the generator."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._admission.release()
            await self._body.aclose()  # its cleanup now, not when it is collected


def resume_point(header: str | None, query: str | None) -> ResumePoint | None:
    """The resume point of the `Last-Event-ID` header or the `last_event_id` parameter.

    Both given with different points is HTTPException(400): no silent pick.
    """
    from_header, from_query = parse_last_event_id(header), parse_last_event_id(query)
    if from_header is not None and from_query is not None and from_header != from_query:
        raise HTTPException(
            400, "Last-Event-ID and last_event_id name different events; send one of them"
        )
    return from_header if from_header is not None else from_query


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
    replay_turns = asyncio.Lock()

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
        resume_after: Annotated[
            str | None,
            Query(
                alias="last_event_id",
                description="Resume after this id, for a stream opened anew (a new "
                "EventSource cannot send Last-Event-ID); as the header, which it must not "
                "contradict.",
            ),
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
        after = resume_point(last_event_id, resume_after)
        replay = min(replay, state.settings.history_size)
        # No await from the check above to here: the place is counted before another
        # request can look at the count.
        body = events(
            state, view, interval, after, replay, unchecked=latest is None, turns=replay_turns
        )
        return EventStreamResponse(body, Admission(state.stats))

    return router
