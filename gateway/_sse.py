"""GET /api/v1/real-time-metrics/stream: Server-Sent Events fanned out from the one subscription.

Each event is `event: snapshot`, `id: <sequence>` and the REST body (of the client's view) as
`data:`. A reconnecting client sends `Last-Event-ID` and gets every snapshot after it from the
gateway's ring, or from the aggregator's history when the ring does not reach back that far.
While no fresh snapshot exists the client gets one `event: error` with the REST error shape,
and snapshot events again once the aggregator is back. Comment lines keep idle connections open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import StreamingResponse

from gateway._errors import FilterError
from gateway._pacing import Pacer
from gateway._state import GatewayState
from gateway._views import SnapshotEntry, View, make_view, split_names
from mesh_common.wire_time import iso_utc

PATH = "/api/v1/real-time-metrics/stream"
RETRY_MS = 2000


def frame(entry: SnapshotEntry, view: View, now: float) -> bytes:
    """One `snapshot` event."""
    return b"id: %d\nevent: snapshot\ndata: " % entry.sequence + entry.body(view, now) + b"\n\n"


async def backlog(state: GatewayState, after: int | None, replay: int) -> list[SnapshotEntry]:
    """What a new client gets first: everything after `after`, or the last `replay` snapshots."""
    hub = state.hub
    if after is None:
        return hub.history()[-replay:] if replay else []
    ring = hub.history_after(after)
    if ring is not None:
        return ring
    ring = hub.history()
    older = (
        [old async for old in hub.replay_from_aggregator(after, ring[0].sequence)] if ring else []
    )
    return older + ring


async def events(
    state: GatewayState, view: View, interval: float, after: int | None, replay: int
) -> AsyncIterator[bytes]:
    """The event stream of one client: retry hint, backlog, then live snapshots and errors."""
    monotonic = state.clocks.monotonic
    state.stats.sse_clients += 1
    try:
        yield b"retry: %d\n\n" % RETRY_MS
        pacer = Pacer(state, interval)
        for entry in await backlog(state, after, replay):
            yield frame(entry, view, monotonic())
            pacer.mark_sent(entry)
        heartbeat = state.settings.heartbeat_seconds
        last_send = monotonic()
        while True:
            update = await pacer.next(deadline=last_send + heartbeat)
            now = monotonic()
            if update is None:
                yield b": heartbeat " + iso_utc(state.clocks.wall()).encode() + b"\n\n"
            elif update.entry is None:
                yield b"event: error\ndata: " + state.error_body(now) + b"\n\n"
            else:
                # One frame per snapshot and view, shared by every client (its
                # snapshot_age_ms is the age when the first client got it).
                entry = update.entry
                yield entry.cached(view, partial(frame, entry, view, now))
            last_send = now
    finally:
        state.stats.sse_clients -= 1


def parse_last_event_id(value: str | None) -> int | None:
    """The sequence a client resumes after; HTTPException(400) when it is not one."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise HTTPException(400, f"Last-Event-ID {value[:40]!r} is not a sequence number")
    return int(text)


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
        services: Annotated[
            list[str] | None, Query(description="Only these services (comma-separated).")
        ] = None,
        types: Annotated[
            list[str] | None, Query(description="Only these service types (comma-separated).")
        ] = None,
        fields: Annotated[
            list[str] | None,
            Query(description="Only these row fields (service_name, status always kept)."),
        ] = None,
        interval: Annotated[
            float, Query(ge=0.0, le=3600.0, description="Least seconds between two events.")
        ] = 0.0,
        replay: Annotated[
            int, Query(ge=0, le=100_000, description="Send this many recent snapshots first.")
        ] = 0,
        last_event_id: Annotated[
            str | None, Header(description="Resume after this sequence (set by EventSource).")
        ] = None,
    ) -> StreamingResponse:
        """Snapshots as they complete: `event: snapshot` (id = sequence), `event: error`."""
        latest = state.hub.latest
        try:
            view = make_view(
                split_names(services),
                split_names(types),
                split_names(fields),
                known_services=None
                if latest is None
                else (row.service_name for row in latest.rows),
            )
        except FilterError as error:
            raise HTTPException(422, str(error)) from error
        after = parse_last_event_id(last_event_id)
        return StreamingResponse(
            events(state, view, interval, after, min(replay, state.settings.history_size)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
