"""WebSocket /ws/metrics: the push protocol of the metric-streaming requirement (seed 002).

Client -> server (JSON objects with a `type`):
  subscribe / unsubscribe  {"metric_types": ["system" | "service" | "all", ...]}
  set_filters              {"filters": {"service_names": [...], "service_types": [...],
                                        "fields": [...]}}
  set_update_interval      {"interval_seconds": 2.0}
  set_batching             {"batch_size": 20, "batch_timeout_seconds": 0.5}
  ping                     {}                      -> pong
  get_statistics           {}                      -> statistics
Server -> client: welcome, subscription_confirmed, unsubscription_confirmed, filters_updated,
update_interval_set, batching_updated, pong, statistics, metric_update (one item),
metric_batch (several items: by size, or everything pending when the batch timeout expires),
and error ({"code", "message"}) for a malformed message or an unreachable aggregator; the
connection stays open after an error.

A `system` item carries the fleet totals, a `service` item one service's row. Subscribing to
`alerts` (also seed 003's `{"type": "subscribe", "data": {"subscription": "alerts"}}`) sends the
pending and firing alerts of the filtered services at once, then `{"type": "alert", "data":
{...}}` on every change. Filters are the
gateway's one `View` (services, types, fields) and pacing its one `Pacer`, as for SSE. New
subscribers get the current values at once, then one update per snapshot (at most one per
interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway._alerts import AlertFeed
from gateway._errors import FilterError, ProtocolError
from gateway._limits import TokenBucket, origin_allowed
from gateway._pacing import Pacer
from gateway._state import GatewayState
from gateway._views import SnapshotEntry, View, json_bytes, make_view
from mesh_common.bounded import RateLimitedLog, quote, shorten
from mesh_common.figures import ROW_FIGURE_NAMES, TOTAL_FIGURE_NAMES
from mesh_common.wire_time import iso_utc

_LOG = RateLimitedLog(logging.getLogger("gateway.ws"))

PATH = "/ws/metrics"
METRIC_TYPES = ("system", "service")
"""The metric types fed by snapshots."""
ALERTS = "alerts"
"""The metric type of alert changes: `{"type": "alert", "data": {...}}` per change."""
SEED_SUBSCRIPTIONS = {"metrics": METRIC_TYPES, ALERTS: (ALERTS,)}
"""Seed 003's `{"type": "subscribe", "data": {"subscription": ...}}` names -> metric types."""
SYSTEM_FIELDS = (*TOTAL_FIGURE_NAMES, "snapshot_age_ms")
"""The figures of a `system` item: the fleet's totals and the snapshot's age."""
KNOWN_FIELDS = tuple(dict.fromkeys((*ROW_FIGURE_NAMES, *SYSTEM_FIELDS)))
FILTER_KEYS = ("service_names", "service_types", "fields")
MAX_BATCH_SIZE = 1000
MAX_INTERVAL_SECONDS = 3600.0
MAX_BATCH_TIMEOUT_SECONDS = 60.0
MESSAGE_TYPES = (
    "subscribe",
    "unsubscribe",
    "set_filters",
    "set_update_interval",
    "set_batching",
    "ping",
    "get_statistics",
)


@dataclass
class Subscription:
    """One client's wishes: what it subscribed to, its view, and its batching."""

    metric_types: set[str] = field(default_factory=set)
    view: View = field(default_factory=View)
    batch_size: int = 20
    batch_timeout: float = 0.0


def system_item(entry: SnapshotEntry, now: float) -> dict[str, Any]:
    """The fleet totals of a snapshot as a `system` item's data."""
    return {**entry.totals(), "snapshot_age_ms": round(entry.age(now) * 1000.0)}


def items_for(sub: Subscription, entry: SnapshotEntry, now: float) -> list[dict[str, Any]]:
    """The items one snapshot yields for a subscription."""
    stamp = iso_utc(entry.take_time)
    view = sub.view
    items: list[dict[str, Any]] = []

    def item(metric_type: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "metric_type": metric_type,
            "timestamp": stamp,
            "sequence": entry.sequence,
            "data": data,
        }

    if "system" in sub.metric_types:
        data = system_item(entry, now)
        if view.fields:
            data = {key: value for key, value in data.items() if key in view.fields}
        items.append(item("system", data))
    if "service" in sub.metric_types:
        items.extend(item("service", view.project(row)) for row in entry.rows if view.keeps(row))
    return items


def _seed_subscription(message: dict[str, Any]) -> tuple[str, ...] | None:
    """The metric types of seed 003's `"data": {"subscription": "metrics" | "alerts"}`."""
    data = message.get("data")
    if "metric_types" in message or not isinstance(data, dict) or "subscription" not in data:
        return None
    name = data["subscription"]
    if not isinstance(name, str) or name not in SEED_SUBSCRIPTIONS:
        raise ProtocolError(
            f"unknown subscription {name!r}; known: {', '.join(SEED_SUBSCRIPTIONS)}"
        )
    return SEED_SUBSCRIPTIONS[name]


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


def parse_message(text: str) -> dict[str, Any]:
    """A client message as an object with a known string `type`; ProtocolError otherwise.

    Whatever the text (deep nesting, bad UTF-8, huge numbers), the outcome is a message or
    a ProtocolError with a short text, never another exception.
    """
    try:
        message = orjson.loads(text)
    except (ValueError, RecursionError, TypeError, MemoryError) as error:
        raise ProtocolError(f"not JSON: {shorten(str(error), 120)}") from error
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    if message["type"] not in MESSAGE_TYPES:
        raise ProtocolError(
            f"unknown message type {quote(message['type'], 60)}; known: {', '.join(MESSAGE_TYPES)}"
        )
    return message


class Connection:
    """One WebSocket client: its subscription, its pusher and its counters."""

    _ids = itertools.count(1)

    def __init__(self, websocket: WebSocket, state: GatewayState) -> None:
        self.ws = websocket
        self.state = state
        self.client_id = f"client_{next(self._ids)}"
        self.sub = Subscription()
        self.pacer = Pacer(state)
        self.messages_sent = 0
        self.connected_at = state.clocks.monotonic()
        self._send_lock = asyncio.Lock()
        self._poke = asyncio.Event()
        self._alerts: AlertFeed | None = None
        """The client's cursor in the alert changes while it is subscribed to `alerts`."""

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message."""
        text = json_bytes(message).decode()
        async with self._send_lock:
            await self.ws.send_text(text)
        self.messages_sent += 1
        self.state.stats.ws_messages_sent += 1

    def wake(self, resend: bool = False) -> None:
        """Make the pusher look again (and resend the current snapshot if asked)."""
        if resend:
            self.pacer.resend()
        self._poke.set()

    # -- client messages --------------------------------------------------------------------

    async def handle(self, text: str) -> None:
        """Answer one client message; ProtocolError for anything malformed."""
        message = parse_message(text)
        await getattr(self, f"_on_{message['type']}")(message)

    def _types(self, message: dict[str, Any]) -> set[str]:
        seed = _seed_subscription(message)
        if seed is not None:
            return set(seed)
        names = _names(message.get("metric_types"), "metric_types")
        unknown = sorted(set(names) - {*METRIC_TYPES, ALERTS, "all"})
        if unknown:
            raise ProtocolError(
                f"unknown metric type(s) {', '.join(unknown)}; known: system, service, alerts, all"
            )
        return {*METRIC_TYPES, ALERTS} if "all" in names else set(names)

    async def _on_subscribe(self, message: dict[str, Any]) -> None:
        added = self._types(message) - self.sub.metric_types
        self.sub.metric_types |= added
        if ALERTS in added:
            self._alerts = AlertFeed(self.state.alerts, current=True)
        await self.send(
            {"type": "subscription_confirmed", "metric_types": sorted(self.sub.metric_types)}
        )
        self.wake(resend=bool(added - {ALERTS}))

    async def _on_unsubscribe(self, message: dict[str, Any]) -> None:
        self.sub.metric_types -= self._types(message)
        if ALERTS not in self.sub.metric_types:
            self._alerts = None
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
        current = self.sub.view
        wanted = {
            key: _names(filters[key], f"filters.{key}") if key in filters else None
            for key in FILTER_KEYS
        }
        latest = self.state.hub.latest
        try:
            view = make_view(
                sorted(current.services.names)
                if wanted["service_names"] is None
                else wanted["service_names"],
                sorted(current.services.types)
                if wanted["service_types"] is None
                else wanted["service_types"],
                current.fields if wanted["fields"] is None else wanted["fields"],
                known_services=None
                if latest is None
                else (row.service_name for row in latest.rows),
                known_fields=KNOWN_FIELDS,
            )
        except FilterError as error:
            raise ProtocolError(str(error)) from error
        self.sub.view = view
        await self.send(
            {
                "type": "filters_updated",
                "filters": {
                    "service_names": sorted(view.services.names),
                    "service_types": sorted(view.services.types),
                    "fields": sorted(view.fields),
                },
            }
        )

    async def _on_set_update_interval(self, message: dict[str, Any]) -> None:
        self.pacer.interval = _number(
            message.get("interval_seconds"), "interval_seconds", 0.0, MAX_INTERVAL_SECONDS
        )
        await self.send({"type": "update_interval_set", "interval_seconds": self.pacer.interval})
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
        await self.send({"type": "pong", "timestamp": iso_utc(self.state.clocks.wall())})

    async def _on_get_statistics(self, message: dict[str, Any]) -> None:
        stats, hub = self.state.stats, self.state.hub
        now = self.state.clocks.monotonic()
        await self.send(
            {
                "type": "statistics",
                "connected_clients": stats.ws_clients,
                "total_messages_sent": stats.ws_messages_sent,
                "uptime_seconds": round(self.state.uptime(), 3),
                "client": {
                    "client_id": self.client_id,
                    "messages_sent": self.messages_sent,
                    "connected_seconds": round(now - self.connected_at, 3),
                    "metric_types": sorted(self.sub.metric_types),
                },
                "upstream": {
                    "state": str(hub.state),
                    "sequence": hub.latest.sequence if hub.latest else None,
                },
            }
        )

    def welcome(self) -> dict[str, Any]:
        """The first message a client gets."""
        return {
            "type": "welcome",
            "client_id": self.client_id,
            "timestamp": iso_utc(self.state.clocks.wall()),
            "message": "Connected to real-time metrics stream",
            "metric_types": [*METRIC_TYPES, ALERTS, "all"],
            "subscriptions": [],
            "update_interval_seconds": self.pacer.interval,
            "batch_size": self.sub.batch_size,
            "batch_timeout_seconds": self.sub.batch_timeout,
        }

    # -- pushing ----------------------------------------------------------------------------

    async def _flush(self, pending: list[dict[str, Any]], everything: bool) -> None:
        size = self.sub.batch_size
        while len(pending) >= size or (everything and pending):
            chunk, pending[:] = pending[:size], pending[size:]
            if len(chunk) == 1:
                await self.send({"type": "metric_update", "data": chunk[0]})
            else:
                await self.send({"type": "metric_batch", "count": len(chunk), "data": chunk})

    async def _send_alerts(self) -> tuple[asyncio.Event, ...]:
        """Send the alert changes not sent yet; the events that announce the next ones."""
        feed = self._alerts
        if feed is None:
            return ()
        marker = feed.marker()  # before take(): a change after it sets the marker
        for entry in feed.take(self.sub.view.services.keeps):
            await self.send({"type": "alert", "data": entry.json})
        return (marker,)

    async def push(self) -> None:
        """Send updates until cancelled: one per snapshot (interval, batching) and per alert."""
        monotonic = self.state.clocks.monotonic
        pending: list[dict[str, Any]] = []
        flush_at: float | None = None
        while True:
            alert_markers = await self._send_alerts()
            update = await self.pacer.next(
                deadline=flush_at,
                pokes=(self._poke, *alert_markers),
                snapshots=bool(self.sub.metric_types - {ALERTS}),
            )
            self._poke.clear()
            now = monotonic()
            if update is None:  # a batch timeout, or a poke
                if flush_at is not None and now >= flush_at:
                    await self._flush(pending, True)
                    flush_at = None
                continue
            if update.entry is None:
                await self.send(
                    {"type": "error", "code": "upstream_unavailable", "message": update.problem}
                )
                continue
            if not pending:
                flush_at = now + self.sub.batch_timeout
            pending.extend(items_for(self.sub, update.entry, now))
            await self._flush(pending, self.sub.batch_timeout == 0)
            if not pending:
                flush_at = None


async def serve_connection(conn: Connection) -> None:
    """Answer the client's messages until it disconnects (or the pusher fails).

    A message over `ws_max_message_bytes` closes the connection with 1009 naming the limit;
    messages beyond `ws_messages_per_second` (bursts of twice that) are dropped with one
    `rate_limited` error a second; any other bad message gets an error reply (its text at
    most ~400 characters) and the connection stays.
    """
    websocket = conn.ws
    settings = conn.state.settings
    limit = settings.ws_max_message_bytes
    rate = settings.ws_messages_per_second
    bucket = TokenBucket(rate, 2 * rate, conn.state.clocks.monotonic)
    told_at = -math.inf
    pusher: asyncio.Task[None] | None = None
    try:
        await conn.send(conn.welcome())
        pusher = asyncio.create_task(conn.push(), name=f"ws push {conn.client_id}")
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            data = message.get("bytes")
            size = len(data) if text is None and data is not None else _utf8_size(text or "")
            if size > limit:
                await websocket.close(1009, f"message too big: the limit is {limit} bytes")
                break
            if not bucket.take():
                now = conn.state.clocks.monotonic()
                if now - told_at >= 1.0:
                    told_at = now
                    await conn.send(
                        {
                            "type": "error",
                            "code": "rate_limited",
                            "message": f"more than {rate:g} messages/s: messages are dropped "
                            "(ws_messages_per_second)",
                        }
                    )
                continue
            try:
                if text is None:
                    raise ProtocolError("send text frames")
                await conn.handle(text)
            except ProtocolError as error:
                await conn.send(
                    {"type": "error", "code": "invalid_message", "message": shorten(str(error))}
                )
            except (ValueError, TypeError, LookupError, RecursionError) as error:
                _LOG.warning("client message of %s not handled: %r", conn.client_id, error)
                await conn.send(
                    {
                        "type": "error",
                        "code": "invalid_message",
                        "message": "message not understood",
                    }
                )
            if pusher.done():
                break
    except WebSocketDisconnect:
        pass
    finally:
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher


def _utf8_size(text: str) -> int:
    """The size of `text` in UTF-8, without encoding it when the answer is plain."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def ws_router(state: GatewayState) -> APIRouter:
    """The WebSocket endpoint."""
    router = APIRouter()

    @router.websocket(PATH)
    async def metrics_socket(websocket: WebSocket) -> None:
        """Serve one client until it disconnects.

        Browsers' WebSockets are accepted from the gateway's own origin and the configured
        `cors_origins` only (403 otherwise); beyond `max_ws_clients` the socket is closed
        with 1013 and a reason. Each client costs about 40 KB (its tasks, buffers, view).
        """
        headers = websocket.headers
        if not origin_allowed(
            headers.get("origin"), headers.get("host"), state.settings.cors_origins
        ):
            await websocket.close(1008)  # before accept: the client gets HTTP 403
            return
        await websocket.accept()
        cap = state.settings.max_ws_clients
        if state.stats.ws_clients >= cap:
            await websocket.close(1013, f"too many WebSocket clients (limit {cap}); retry later")
            return
        state.stats.ws_clients += 1
        try:
            await serve_connection(Connection(websocket, state))
        finally:
            state.stats.ws_clients -= 1

    return router
