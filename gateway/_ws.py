"""WebSocket /ws/metrics: the connection and pusher of seed 002's and seed 003's push protocol.

Client -> server (JSON objects with a `type`; the names and their mapping onto the mesh are
`gateway._ws_vocabulary`'s, the items `gateway._ws_items`'):
  subscribe / unsubscribe  {"metric_types": ["system", "agent", ...]} or seed 003's
                           {"data": {"subscription": "metrics" | "alerts"}}
  set_filters              {"filters": {"agent_ids" | "service_names": [...],
                                        "service_types": [...], "fields": [...]}}
  set_update_interval      {"interval_seconds": 2.0}
  set_batching             {"batch_size": 20, "batch_timeout_seconds": 0.5}
  ping                     {}                      -> pong
  get_statistics           {}                      -> statistics
Server -> client: welcome, subscription_confirmed / unsubscription_confirmed (`metric_types`:
as sent, unknown names included; `subscriptions`: the whole current set), filters_updated
(`filters` as sent, `applied`: the filters in effect), update_interval_set, batching_updated,
pong, statistics, metric_update (one item), metric_batch (several items: by size, or
everything pending when the batch timeout expires), seed 003's metric_update (`data.metrics`),
alert, and error ({"code", "message"}) for a wholly wrong message or an unreachable
aggregator; the connection stays open after an error. Every confirmation carries `ignored`:
what the message named that the mesh does not have, and why; the rest is applied.

Subscribing to `alerts` sends the pending and firing alerts of the filtered services at once,
then `{"type": "alert", "data": {...}}` on every change. Filters are the gateway's one `View`
(services, types, fields) and pacing its one `Pacer`, as for SSE. New subscribers get the
current values at once, then one update per snapshot (at most one per interval). A client
costs one pusher task, whatever it subscribed to.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway._alerts import AlertFeed
from gateway._errors import ProtocolError
from gateway._limits import TokenBucket, origin_allowed
from gateway._pacing import Pacer
from gateway._state import GatewayState
from gateway._views import SnapshotEntry, json_bytes
from gateway._ws_items import Subscription, items_for, seed_003_update
from gateway._ws_vocabulary import (
    ALERTS,
    ALL,
    HERO,
    METRICS,
    TYPE_NAMES,
    Ignored,
    TypesRequest,
    number,
    parse_message,
    types_request,
    update_filters,
)
from mesh_common.bounded import RateLimitedLog, shorten
from mesh_common.filters import ServiceFilter
from mesh_common.wire_time import iso_utc

_LOG = RateLimitedLog(logging.getLogger("gateway.ws"))
_FAILURES = RateLimitedLog(logging.getLogger("gateway.ws"))
"""Pushers that failed: a budget of their own, so bad client messages cannot hide one."""

PATH = "/ws/metrics"
MAX_BATCH_SIZE = 1000
MAX_INTERVAL_SECONDS = 3600.0
MAX_BATCH_TIMEOUT_SECONDS = 60.0
MAX_UNCHECKED_FILTERS = 32
"""`set_filters` messages kept for the late check before the first snapshot (older ones are
applied as sent, unchecked)."""


def batch_message(chunk: list[Any]) -> dict[str, Any]:
    """Seed 002's message for some items: `metric_update` for one, `metric_batch` for more."""
    if len(chunk) == 1:
        return {"type": "metric_update", "data": chunk[0]}
    return {"type": "metric_batch", "count": len(chunk), "data": chunk}


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
        self.closed = False
        """True once the gateway closed the connection: nothing more is sent."""
        self._send_lock = asyncio.Lock()
        self._poke = asyncio.Event()
        self._alerts: AlertFeed | None = None
        """The client's cursor in the alert changes while it is subscribed to `alerts`."""
        self._unchecked: list[dict[str, Any]] = []
        """`set_filters` filters applied before the first snapshot, names not yet checked."""
        self._unchecked_base = self.sub.filters
        """The filters before the first of `_unchecked`: where the late check starts from."""

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message."""
        await self.send_text(json_bytes(message).decode())

    async def send_text(self, text: str) -> None:
        """Send one message already encoded as JSON text (dropped once the gateway closed)."""
        async with self._send_lock:
            if self.closed:
                return
            await self.ws.send_text(text)
        self.messages_sent += 1
        self.state.stats.ws_messages_sent += 1

    async def close(self, code: int, reason: str) -> None:
        """Close the connection with `code` and `reason` (a second call does nothing)."""
        async with self._send_lock:
            if self.closed:
                return
            self.closed = True
            await self.ws.close(code, reason)

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

    async def _on_subscribe(self, message: dict[str, Any]) -> None:
        ignored = Ignored()
        request = types_request(message, ignored)
        chosen = request.chosen()
        added = set(chosen) - set(self.sub.chosen)
        self.sub.chosen.update(chosen)
        if ALERTS in added:
            self._alerts = AlertFeed(self.state.alerts, current=True)
        await self.send(self._types_reply("subscription_confirmed", request, ignored))
        self.wake(resend=bool(added - {ALERTS}))

    async def _on_unsubscribe(self, message: dict[str, Any]) -> None:
        ignored = Ignored()
        request = types_request(message, ignored)
        if ALL in request.names:
            self.sub.chosen.clear()
        for metric_type in request.chosen():
            self.sub.chosen.pop(metric_type, None)
        if ALERTS not in self.sub.chosen:
            self._alerts = None
        await self.send(self._types_reply("unsubscription_confirmed", request, ignored))

    def _types_reply(
        self, message_type: str, request: TypesRequest, ignored: Ignored
    ) -> dict[str, Any]:
        """The confirmation: what was asked, as sent; the current set; what was ignored."""
        reply: dict[str, Any] = {"type": message_type, "metric_types": list(request.asked)}
        if request.subscription is not None:
            reply["subscription"] = request.subscription
        return {**reply, "subscriptions": self.sub.names(), **ignored.json()}

    async def _on_set_filters(self, message: dict[str, Any]) -> None:
        ignored = Ignored()
        latest = self.state.hub.latest
        if latest is not None and self._unchecked:
            await self._check_late(latest)
        rows = None if latest is None else latest.rows
        filters = message.get("filters")
        if not isinstance(filters, dict):
            raise ProtocolError('set_filters needs "filters": {"agent_ids": [...], ...}')
        if rows is None:
            if not self._unchecked:
                self._unchecked_base = self.sub.filters
                self.wake()  # the pusher then waits for the first snapshot, to check them
            self._unchecked.append(filters)
            if len(self._unchecked) > MAX_UNCHECKED_FILTERS:  # the oldest stays unchecked
                oldest = self._unchecked.pop(0)
                self._unchecked_base = update_filters(
                    oldest, self._unchecked_base, services=None, service_types=None,
                    ignored=Ignored(),
                )  # fmt: skip
        self.sub.filters = update_filters(
            filters,
            self.sub.filters,
            services=None if rows is None else [row.service_name for row in rows],
            service_types=None if rows is None else [row.service_type for row in rows],
            ignored=ignored,
        )
        await self.send(
            {
                "type": "filters_updated",
                "filters": filters,
                "applied": self.sub.filters.applied(),
                **ignored.json(),
            }
        )

    async def _check_late(self, entry: SnapshotEntry) -> None:
        """Check the names of the filters set before the first snapshot against `entry`.

        Those filters were applied as sent (nothing to check them against); replayed now
        with the snapshot's names, an unknown name is left out as it would have been then,
        and one `filters_updated` with `"rechecked": true` (the last filters sent, the filters
        now in effect) says what was ignored and why.
        """
        pending, self._unchecked = self._unchecked, []
        services = [row.service_name for row in entry.rows]
        service_types = [row.service_type for row in entry.rows]
        filters, ignored = self._unchecked_base, Ignored()
        for sent in pending:
            filters = update_filters(
                sent, filters, services=services, service_types=service_types, ignored=ignored
            )
        changed = filters != self.sub.filters
        self.sub.filters = filters
        if changed and self._alerts is not None:
            # Alerts were picked by the unchecked filters: the current ones again, rightly.
            self._alerts = AlertFeed(self.state.alerts, current=True)
        if ignored.service_named:
            await self.send(
                {
                    "type": "filters_updated",
                    "filters": pending[-1],
                    "applied": filters.applied(),
                    **ignored.json(),
                    "rechecked": True,
                }
            )

    async def _on_set_update_interval(self, message: dict[str, Any]) -> None:
        self.pacer.interval = number(
            message.get("interval_seconds"), "interval_seconds", 0.0, MAX_INTERVAL_SECONDS
        )
        await self.send({"type": "update_interval_set", "interval_seconds": self.pacer.interval})
        self.wake()

    async def _on_set_batching(self, message: dict[str, Any]) -> None:
        if "batch_size" in message:
            size = number(message["batch_size"], "batch_size", 1, MAX_BATCH_SIZE)
            if size != int(size):
                raise ProtocolError("batch_size must be a whole number")
            self.sub.batch_size = int(size)
        if "batch_timeout_seconds" in message:
            self.sub.batch_timeout = number(
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
                    "subscriptions": self.sub.names(),
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
            "known_metric_types": list(TYPE_NAMES),
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
            await self.send(batch_message(chunk))

    def _snapshot_messages(self, entry: SnapshotEntry, now: float) -> tuple[str, ...]:
        """A snapshot's messages for this client when nothing is pending, as JSON text.

        Built once per snapshot for every client with the same subscription, filters and
        batch size (their items and batches are the same), then shared; a client served a
        quarter of a second later, or after an alert change (hero), gets its own.
        """
        sub = self.sub
        alerts = self.state.alerts
        key = (
            "ws",
            tuple(sorted(sub.chosen.items())),
            sub.filters.view.services.key(),
            sub.filters.fields,
            sub.batch_size,
            # What else the items hold: the snapshot's age (within 0.25 s) and, for hero,
            # the alerts as they stand.
            int(entry.age(now) * 4),
            (alerts.synced, alerts.position, alerts.sequence) if HERO in sub.chosen else None,
        )

        def build() -> tuple[str, ...]:
            items = items_for(sub, entry, now, self._alerts_firing)
            size = sub.batch_size
            chunks = (items[start : start + size] for start in range(0, len(items), size))
            return tuple(json_bytes(batch_message(chunk)).decode() for chunk in chunks)

        return entry.cached(key, build)

    def _alerts_firing(self, services: ServiceFilter) -> int | None:
        """How many alerts of the kept services fire; None while the gateway does not know."""
        alerts = self.state.alerts
        if not alerts.synced:
            return None
        return sum(
            1
            for entry in alerts.current()
            if entry.firing and services.keeps(entry.service_name, entry.service_type)
        )

    async def _send_alerts(self) -> tuple[asyncio.Event, ...]:
        """Send the alert changes not sent yet; the events that announce the next ones."""
        feed = self._alerts
        if feed is None:
            return ()
        marker = feed.marker()  # before take(): a change after it sets the marker
        for entry in feed.take(self.sub.filters.view.services.keeps):
            await self.send({"type": "alert", "data": entry.json})
        return (marker,)

    async def run_pusher(self) -> None:
        """Push until cancelled or the client leaves; a failure is logged and closes with 1011.

        The client learns at once that nothing more will come (it may reconnect), rather than
        staying connected to a pusher that is gone.
        """
        try:
            await self.push()
        except WebSocketDisconnect:
            pass  # the client left while a message was on its way
        except Exception as error:
            _FAILURES.log(
                logging.ERROR,
                "the pusher of %s failed; closing its connection (1011)",
                self.client_id,
                exc_info=error,
            )
            await self.close(1011, "internal error: the gateway stopped pushing; reconnect")

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
                snapshots=bool(set(self.sub.chosen) - {ALERTS}) or bool(self._unchecked),
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
            if self._unchecked:
                await self._check_late(update.entry)
            if not pending:
                flush_at = now + self.sub.batch_timeout
            if METRICS in self.sub.chosen:
                await self.send(seed_003_update(self.sub.filters, update.entry))
            if self.sub.batch_timeout == 0 and not pending:
                for text in self._snapshot_messages(update.entry, now):
                    await self.send_text(text)
                flush_at = None
                continue
            pending.extend(items_for(self.sub, update.entry, now, self._alerts_firing))
            await self._flush(pending, self.sub.batch_timeout == 0)
            if not pending:
                flush_at = None


async def serve_connection(conn: Connection) -> None:
    """Answer the client's messages until it disconnects or the gateway closes the connection.

    A message over `ws_max_message_bytes` closes the connection with 1009 naming the limit;
    messages beyond `ws_messages_per_second` (bursts of twice that) are dropped with one
    `rate_limited` error a second; any other bad message gets an error reply (its text at
    most ~400 characters) and the connection stays. A pusher that fails closes it with 1011
    (`Connection.run_pusher`); the client's close then ends this loop.
    """
    pusher: asyncio.Task[None] | None = None
    try:
        await conn.send(conn.welcome())
        pusher = asyncio.create_task(conn.run_pusher(), name=f"ws push {conn.client_id}")
        await _read_messages(conn)
    except WebSocketDisconnect:
        pass
    finally:
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher


async def _read_messages(conn: Connection) -> None:
    """Receive and answer messages within the size and rate limits, until the client leaves."""
    settings = conn.state.settings
    limit = settings.ws_max_message_bytes
    rate = settings.ws_messages_per_second
    bucket = TokenBucket(rate, 2 * rate, conn.state.clocks.monotonic)
    told_at = -math.inf
    while True:
        message = await conn.ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        data = message.get("bytes")
        size = len(data) if text is None and data is not None else _utf8_size(text or "")
        if size > limit:
            await conn.close(1009, f"message too big: the limit is {limit} bytes")
            return
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
        await _answer(conn, text)


async def _answer(conn: Connection, text: str | None) -> None:
    """Handle one client message; anything wrong with it gets an `invalid_message` error."""
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
            {"type": "error", "code": "invalid_message", "message": "message not understood"}
        )


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
        with 1013 and a reason. Each client costs about 45 KB of the gateway's memory (its
        connection, tasks and buffers; measured by `python -m bench ws_memory`).
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
