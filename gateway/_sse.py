"""GET /api/v1/real-time-metrics/stream: Server-Sent Events fanned out from the one subscription.

Each event is `event: snapshot`, `id: <sequence>` and the REST body (of the client's view) as
`data:`. A reconnecting client sends `Last-Event-ID` and gets every snapshot after it from the
gateway's ring, or from the aggregator's history when the ring does not reach back that far.
While no fresh snapshot exists the client gets one `event: error` with the REST error shape,
and snapshot events again once the aggregator is back. Comment lines keep idle connections open.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import StreamingResponse

from gateway._state import GatewayState
from gateway._views import ROW_FIELDS, SnapshotEntry, View, iso_utc

PATH = "/api/v1/real-time-metrics/stream"
RETRY_MS = 2000


def split_names(values: list[str] | None) -> list[str]:
    """`a,b&x=c` style parameters as one list, blanks dropped."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def make_view(
    state: GatewayState, services: list[str], types: list[str], fields: list[str]
) -> View:
    """A validated View; HTTPException(422) naming what is unknown."""
    unknown_fields = sorted(set(fields) - set(ROW_FIELDS))
    if unknown_fields:
        raise HTTPException(
            422, f"unknown field(s) {', '.join(unknown_fields)}; known: {', '.join(ROW_FIELDS)}"
        )
    latest = state.hub.latest
    if services and latest is not None:
        known = {row["service_name"] for row in latest.rows}
        unknown = sorted(set(services) - known)
        if unknown:
            raise HTTPException(
                422, f"unknown service(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
    return View(frozenset(services), frozenset(types), tuple(fields))


def frame(entry: SnapshotEntry, view: View, now: float) -> bytes:
    """One `snapshot` event."""
    return b"id: %d\nevent: snapshot\ndata: " % entry.sequence + entry.body(view, now) + b"\n\n"


def sse_router(state: GatewayState) -> APIRouter:
    """The SSE endpoint."""
    router = APIRouter(tags=["metrics"])
    settings, hub, stats = state.settings, state.hub, state.stats

    async def events(
        view: View, interval: float, after: int | None, replay: int
    ) -> AsyncIterator[bytes]:
        stats.sse_clients += 1
        try:
            yield b"retry: %d\n\n" % RETRY_MS
            sent: SnapshotEntry | None = None
            backlog: list[SnapshotEntry] = []
            entry: SnapshotEntry | None
            if after is not None:
                ring = hub.history_after(after)
                if ring is None:
                    ring = hub.history()
                    if ring:
                        async for old in hub.replay_from_aggregator(after, ring[0].sequence):
                            backlog.append(old)
                backlog.extend(ring)
            elif replay:
                backlog = hub.history()[-replay:]
            for entry in backlog:
                yield frame(entry, view, hub.clock())
                stats.sse_events_sent += 1
                sent = entry
            in_error = False
            last_data = -math.inf  # when the last snapshot went out (for `interval`)
            last_send = hub.clock()  # when anything went out (for heartbeats)
            heartbeat = settings.heartbeat_seconds
            while True:
                marker = hub.change_marker()
                now = hub.clock()
                entry = state.fresh()
                due = -math.inf
                if entry is None:
                    if not in_error:
                        in_error = True
                        body = state.error_body(time.monotonic())
                        yield b"event: error\ndata: " + body + b"\n\n"
                        stats.sse_events_sent += 1
                        last_send = now
                        continue
                elif entry is not sent:
                    due = last_data + interval
                    if now >= due:
                        in_error = False
                        # Live: one frame per snapshot and view, shared by every client
                        # (its snapshot_age_ms is the age when the first client got it).
                        yield entry.cached(view, partial(frame, entry, view, now))
                        stats.sse_events_sent += 1
                        sent, last_data, last_send = entry, now, now
                        continue
                if now >= last_send + heartbeat:
                    yield b": heartbeat " + iso_utc(time.time()).encode() + b"\n\n"
                    last_send = now
                    continue
                if due > now:  # a newer snapshot waits for `interval`: the one timer we need
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(due - now):
                            await marker.wait()
                else:  # the hub's ticks bound this wait (heartbeat, staleness)
                    await marker.wait()
        finally:
            stats.sse_clients -= 1

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
        view = make_view(state, split_names(services), split_names(types), split_names(fields))
        after: int | None = None
        if last_event_id is not None and last_event_id.strip():
            if not last_event_id.strip().isdigit():
                raise HTTPException(400, f"Last-Event-ID {last_event_id!r} is not a sequence")
            after = int(last_event_id)
        return StreamingResponse(
            events(view, interval, after, min(replay, settings.history_size)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
