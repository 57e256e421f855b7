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

A `system` item carries the fleet totals, a `service` item one service's row. Filters are the
gateway's one `View` (services, types, fields) and pacing its one `Pacer`, as for SSE. New
subscribers get the current values at once, then one update per snapshot (at most one per
interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway._errors import FilterError, ProtocolError
from gateway._pacing import Pacer
from gateway._state import GatewayState
from gateway._views import SnapshotEntry, View, json_bytes, make_view
from mesh_common.figures import ROW_FIGURE_NAMES, TOTAL_FIGURE_NAMES
from mesh_common.wire_time import iso_utc

PATH = "/ws/metrics"
METRIC_TYPES = ("system", "service")
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
    """A client message as an object with a known string `type`; ProtocolError otherwise."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(f"not JSON: {error}") from error
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    if message["type"] not in MESSAGE_TYPES:
        raise ProtocolError(
            f"unknown message type {message['type']!r}; known: {', '.join(MESSAGE_TYPES)}"
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
            "metric_types": [*METRIC_TYPES, "all"],
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

    async def push(self) -> None:
        """Send updates until cancelled: one per snapshot, honouring interval and batching."""
        monotonic = self.state.clocks.monotonic
        pending: list[dict[str, Any]] = []
        flush_at: float | None = None
        while True:
            update = await self.pacer.next(
                deadline=flush_at, poke=self._poke, snapshots=bool(self.sub.metric_types)
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
    """Answer the client's messages until it disconnects (or the pusher fails)."""
    websocket = conn.ws
    pusher: asyncio.Task[None] | None = None
    try:
        await conn.send(conn.welcome())
        pusher = asyncio.create_task(conn.push(), name=f"ws push {conn.client_id}")
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            try:
                if text is None:
                    raise ProtocolError("send text frames")
                await conn.handle(text)
            except ProtocolError as error:
                await conn.send({"type": "error", "code": "invalid_message", "message": str(error)})
            if pusher.done():
                break
    except WebSocketDisconnect:
        pass
    finally:
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher


def ws_router(state: GatewayState) -> APIRouter:
    """The WebSocket endpoint."""
    router = APIRouter()

    @router.websocket(PATH)
    async def metrics_socket(websocket: WebSocket) -> None:
        """Serve one client until it disconnects."""
        await websocket.accept()
        state.stats.ws_clients += 1
        try:
            await serve_connection(Connection(websocket, state))
        finally:
            state.stats.ws_clients -= 1

    return router
