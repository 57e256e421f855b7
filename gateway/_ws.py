"""WebSocket /ws/metrics: the push protocol of the metric-streaming requirement (seed 002).

Client -> server (JSON objects with a `type`):
  subscribe / unsubscribe  {"metric_types": ["system" | "service" | "all", ...]}
  set_filters              {"filters": {"service_names": [...], "fields": [...]}}
  set_update_interval      {"interval_seconds": 2.0}
  set_batching             {"batch_size": 20, "batch_timeout_seconds": 0.5}
  ping                     {}                      -> pong
  get_statistics           {}                      -> statistics
Server -> client: welcome, subscription_confirmed, unsubscription_confirmed, filters_updated,
update_interval_set, batching_updated, pong, statistics, metric_update (one item),
metric_batch (several items: by size, or everything pending when the batch timeout expires),
and error ({"code", "message"}) for a malformed message or an unreachable aggregator; the
connection stays open after an error.

A `system` item carries the fleet totals, a `service` item one service's row. New subscribers
get the current values at once, then one update per snapshot (at most one per interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway._state import GatewayState
from gateway._views import ROW_FIELDS, SnapshotEntry, iso_utc

PATH = "/ws/metrics"
METRIC_TYPES = ("system", "service")
SYSTEM_FIELDS = (
    "events_per_second",
    "events_per_hour",
    "total_events",
    "active_count",
    "inactive_apis",
    "data_sources_active",
    "services_answered",
    "services_total",
    "collection_time_ms",
    "snapshot_age_ms",
)
KNOWN_FIELDS = frozenset(ROW_FIELDS) | frozenset(SYSTEM_FIELDS)
FILTER_KEYS = ("service_names", "fields")
MAX_BATCH_SIZE = 1000
MAX_INTERVAL_SECONDS = 3600.0
MAX_BATCH_TIMEOUT_SECONDS = 60.0


class ProtocolError(Exception):
    """A client message the protocol cannot accept; the text goes back to the client."""


@dataclass
class Subscription:
    """One client's wishes."""

    metric_types: set[str] = field(default_factory=set)
    service_names: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()
    interval: float = 0.0
    batch_size: int = 20
    batch_timeout: float = 0.0


def system_item(entry: SnapshotEntry, now: float) -> dict[str, Any]:
    """The fleet totals of a snapshot as a `system` item's data."""
    snap = entry.snapshot
    return {
        "events_per_second": round(snap.events_per_second, 4),
        "events_per_hour": round(snap.events_per_hour, 2),
        "total_events": snap.total_events,
        "active_count": snap.active_count,
        "inactive_apis": snap.inactive_count + snap.error_count,
        "data_sources_active": list(snap.data_sources_active),
        "services_answered": snap.services_answered,
        "services_total": snap.services_total,
        "collection_time_ms": round(
            (snap.round_duration.seconds + snap.round_duration.nanos / 1e9) * 1000.0
        ),
        "snapshot_age_ms": round(entry.age(now) * 1000.0),
    }


def items_for(sub: Subscription, entry: SnapshotEntry, now: float) -> list[dict[str, Any]]:
    """The items one snapshot yields for a subscription."""
    stamp = iso_utc(entry.take_time)
    items: list[dict[str, Any]] = []

    def keep(data: dict[str, Any], always: tuple[str, ...]) -> dict[str, Any]:
        if not sub.fields:
            return data
        return {k: v for k, v in data.items() if k in sub.fields or k in always}

    if "system" in sub.metric_types:
        data = keep(system_item(entry, now), ())
        items.append(
            {"metric_type": "system", "timestamp": stamp, "sequence": entry.sequence, "data": data}
        )
    if "service" in sub.metric_types:
        for row in entry.rows:
            if sub.service_names and row["service_name"] not in sub.service_names:
                continue
            items.append(
                {
                    "metric_type": "service",
                    "timestamp": stamp,
                    "sequence": entry.sequence,
                    "data": keep(row, ("service_name", "status")),
                }
            )
    return items


def _names(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"{what} must be a list of strings")
    return value


def _number(value: Any, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{what} must be a number")
    if not low <= value <= high:
        raise ProtocolError(f"{what} must be between {low:g} and {high:g}, got {value}")
    return float(value)


class Connection:
    """One WebSocket client: its subscription, its pusher task and its counters."""

    _ids = itertools.count(1)

    def __init__(self, websocket: WebSocket, state: GatewayState) -> None:
        self.ws = websocket
        self.state = state
        self.client_id = f"client_{next(self._ids)}"
        self.sub = Subscription()
        self.messages_sent = 0
        self.connected_at = time.monotonic()
        self._send_lock = asyncio.Lock()
        self._poke = asyncio.Event()
        self._resend = False

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message."""
        text = json.dumps(message, separators=(",", ":"))
        async with self._send_lock:
            await self.ws.send_text(text)
        self.messages_sent += 1
        self.state.stats.ws_messages_sent += 1

    def wake(self, resend: bool = False) -> None:
        """Make the pusher look again (and resend the current snapshot if asked)."""
        self._resend = self._resend or resend
        self._poke.set()

    # -- client messages --------------------------------------------------------------------

    async def handle(self, text: str) -> None:
        """Answer one client message; ProtocolError for anything malformed."""
        try:
            message = json.loads(text)
        except ValueError as error:
            raise ProtocolError(f"not JSON: {error}") from error
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ProtocolError('a message must be a JSON object with a string "type"')
        kind = message["type"]
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            raise ProtocolError(
                f"unknown message type {kind!r}; known: subscribe, unsubscribe, set_filters, "
                "set_update_interval, set_batching, ping, get_statistics"
            )
        await handler(message)

    def _types(self, message: dict[str, Any]) -> set[str]:
        names = _names(message.get("metric_types"), "metric_types")
        unknown = sorted(set(names) - {*METRIC_TYPES, "all"})
        if unknown:
            raise ProtocolError(
                f"unknown metric type(s) {', '.join(unknown)}; known: system, service, all"
            )
        return set(METRIC_TYPES) if "all" in names else set(names)

    async def _on_subscribe(self, message: dict[str, Any]) -> None:
        added = self._types(message) - self.sub.metric_types
        self.sub.metric_types |= added
        await self.send(
            {"type": "subscription_confirmed", "metric_types": sorted(self.sub.metric_types)}
        )
        self.wake(resend=bool(added))

    async def _on_unsubscribe(self, message: dict[str, Any]) -> None:
        self.sub.metric_types -= self._types(message)
        await self.send(
            {"type": "unsubscription_confirmed", "metric_types": sorted(self.sub.metric_types)}
        )

    async def _on_set_filters(self, message: dict[str, Any]) -> None:
        filters = message.get("filters")
        if not isinstance(filters, dict):
            raise ProtocolError('set_filters needs "filters": {"service_names": [...], ...}')
        unknown_keys = sorted(set(filters) - set(FILTER_KEYS))
        if unknown_keys:
            raise ProtocolError(
                f"unknown filter(s) {', '.join(unknown_keys)}; known: {', '.join(FILTER_KEYS)}"
            )
        names = self.sub.service_names
        fields = self.sub.fields
        if "service_names" in filters:
            wanted = _names(filters["service_names"], "filters.service_names")
            latest = self.state.hub.latest
            if latest is not None:
                known = {row["service_name"] for row in latest.rows}
                unknown = sorted(set(wanted) - known)
                if unknown:
                    raise ProtocolError(
                        f"unknown service(s) {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(known))}"
                    )
            names = frozenset(wanted)
        if "fields" in filters:
            wanted = _names(filters["fields"], "filters.fields")
            unknown = sorted(set(wanted) - KNOWN_FIELDS)
            if unknown:
                raise ProtocolError(
                    f"unknown field(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(KNOWN_FIELDS))}"
                )
            fields = frozenset(wanted)
        self.sub.service_names, self.sub.fields = names, fields
        await self.send(
            {
                "type": "filters_updated",
                "filters": {"service_names": sorted(names), "fields": sorted(fields)},
            }
        )

    async def _on_set_update_interval(self, message: dict[str, Any]) -> None:
        self.sub.interval = _number(
            message.get("interval_seconds"), "interval_seconds", 0.0, MAX_INTERVAL_SECONDS
        )
        await self.send({"type": "update_interval_set", "interval_seconds": self.sub.interval})
        self.wake()

    async def _on_set_batching(self, message: dict[str, Any]) -> None:
        if "batch_size" in message:
            size = _number(message["batch_size"], "batch_size", 1, MAX_BATCH_SIZE)
            if size != int(size):
                raise ProtocolError("batch_size must be a whole number")
            self.sub.batch_size = int(size)
        if "batch_timeout_seconds" in message:
            self.sub.batch_timeout = _number(
                message["batch_timeout_seconds"],
                "batch_timeout_seconds",
                0.0,
                MAX_BATCH_TIMEOUT_SECONDS,
            )
        await self.send(
            {
                "type": "batching_updated",
                "batch_size": self.sub.batch_size,
                "batch_timeout_seconds": self.sub.batch_timeout,
            }
        )
        self.wake()

    async def _on_ping(self, message: dict[str, Any]) -> None:
        await self.send({"type": "pong", "timestamp": iso_utc(time.time())})

    async def _on_get_statistics(self, message: dict[str, Any]) -> None:
        stats, hub = self.state.stats, self.state.hub
        await self.send(
            {
                "type": "statistics",
                "connected_clients": stats.ws_clients,
                "total_messages_sent": stats.ws_messages_sent,
                "uptime_seconds": round(time.monotonic() - self.state.started, 3),
                "client": {
                    "client_id": self.client_id,
                    "messages_sent": self.messages_sent,
                    "connected_seconds": round(time.monotonic() - self.connected_at, 3),
                    "metric_types": sorted(self.sub.metric_types),
                },
                "upstream": {
                    "state": str(hub.state),
                    "sequence": hub.latest.sequence if hub.latest else None,
                },
            }
        )

    # -- pushing ----------------------------------------------------------------------------

    async def _flush(self, pending: list[dict[str, Any]], everything: bool) -> None:
        size = self.sub.batch_size
        while len(pending) >= size or (everything and pending):
            chunk, pending[:] = pending[:size], pending[size:]
            if len(chunk) == 1:
                await self.send({"type": "metric_update", "data": chunk[0]})
            else:
                await self.send({"type": "metric_batch", "count": len(chunk), "data": chunk})

    async def push(self) -> None:
        """Send updates until cancelled: one per snapshot, honouring interval and batching."""
        hub, stale_after = self.state.hub, self.state.settings.stale_after_seconds
        sent: SnapshotEntry | None = None
        last_send = -math.inf
        pending: list[dict[str, Any]] = []
        pending_since = 0.0
        in_error = False
        while True:
            marker = hub.change_marker()
            self._poke.clear()
            now = hub.clock()
            entry = self.state.fresh()
            deadline = now + stale_after
            if self._resend:
                self._resend, sent = False, None
            if entry is None:
                if not in_error:
                    in_error = True
                    await self.send(
                        {
                            "type": "error",
                            "code": "upstream_unavailable",
                            "message": self.state.problem(),
                        }
                    )
            elif entry is not sent and self.sub.metric_types:
                due = last_send + self.sub.interval
                if now >= due:
                    in_error = False
                    if not pending:
                        pending_since = now
                    pending.extend(items_for(self.sub, entry, now))
                    sent, last_send = entry, now
                    await self._flush(pending, self.sub.batch_timeout == 0)
                    continue
                deadline = min(deadline, due)
            if pending:
                flush_at = pending_since + self.sub.batch_timeout
                if now >= flush_at:
                    await self._flush(pending, True)
                    continue
                deadline = min(deadline, flush_at)
            await _wait_any(marker, self._poke, max(0.0, deadline - now))


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    """Return when either event is set or the timeout passes."""
    waiters = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def ws_router(state: GatewayState) -> APIRouter:
    """The WebSocket endpoint."""
    router = APIRouter()

    @router.websocket(PATH)
    async def metrics_socket(websocket: WebSocket) -> None:
        """Serve one client until it disconnects."""
        await websocket.accept()
        conn = Connection(websocket, state)
        state.stats.ws_clients += 1
        state.stats.ws_clients_total += 1
        pusher: asyncio.Task[None] | None = None
        try:
            await conn.send(
                {
                    "type": "welcome",
                    "client_id": conn.client_id,
                    "timestamp": iso_utc(time.time()),
                    "message": "Connected to real-time metrics stream",
                    "metric_types": [*METRIC_TYPES, "all"],
                    "subscriptions": [],
                    "update_interval_seconds": conn.sub.interval,
                    "batch_size": conn.sub.batch_size,
                    "batch_timeout_seconds": conn.sub.batch_timeout,
                }
            )
            pusher = asyncio.create_task(conn.push(), name=f"ws push {conn.client_id}")
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    await conn.send(
                        {"type": "error", "code": "invalid_message", "message": "send text frames"}
                    )
                    continue
                try:
                    await conn.handle(text)
                except ProtocolError as error:
                    await conn.send(
                        {"type": "error", "code": "invalid_message", "message": str(error)}
                    )
                if pusher.done():
                    break
        except WebSocketDisconnect:
            pass
        finally:
            state.stats.ws_clients -= 1
            if pusher is not None:
                pusher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pusher

    return router
