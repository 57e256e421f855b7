"""The gateway's alerts: one long-lived StreamAlerts subscription, the current alerts in memory.

`AlertHub` is the alert twin of `SnapshotHub`: on every (re)connect it takes the aggregator's
current alerts (`ListAlerts`, with the recently resolved ones) and then follows
`StreamAlerts(after_sequence=<the list's last_sequence>)`, so nothing between the two is lost
and an aggregator restart (its sequence starts again) is picked up whole. A failing or absent
alert service (an aggregator without alerts answers UNIMPLEMENTED) is retried with the same
backoff as the snapshot subscription and logged once per state change.

Every change is numbered in the hub's own log (`position`); an `AlertFeed` is one streaming
client's cursor in that log (SSE, WebSocket). Each alert's JSON is built once per change
(`AlertEntry`). The hub's channel also carries the REST endpoints' unary calls (`stub`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable

import grpc
import orjson
from metricsmesh.v1 import aggregator_pb2_grpc, alerts_pb2

from gateway._errors import GatewayError
from gateway._link import UpstreamLink, UpstreamState
from mesh_common.alert_json import ACTIVE_STATES, alert_json, alert_order
from mesh_common.clocks import ReadClock
from mesh_common.tls import TlsSettings
from mesh_common.wire_time import to_seconds

log = logging.getLogger("gateway.alerts")

RESOLVED_KEPT_SECONDS = 15 * 60.0
"""How long a resolved alert is still shown (the contract's 15 minutes)."""
LOG_SIZE = 1000
"""Changes kept for the streaming clients; a client further behind gets the current alerts."""
CALL_TIMEOUT_SECONDS = 5.0
"""Deadline of the hub's unary calls (ListAlerts on reconnect)."""


class AlertEntry:
    """One alert as received, with its JSON object (and bytes) built once."""

    __slots__ = ("_bytes", "alert", "json", "service_name", "service_type")

    def __init__(self, alert: alerts_pb2.Alert) -> None:
        self.alert = alert
        self.json = alert_json(alert)
        self.service_name = alert.service_name
        self.service_type = alert.service_type
        self._bytes: bytes | None = None

    @property
    def active(self) -> bool:
        """True while the alert is pending or firing."""
        return self.alert.state in ACTIVE_STATES

    @property
    def firing(self) -> bool:
        """True while the alert is firing."""
        return self.alert.state == alerts_pb2.ALERT_STATE_FIRING

    def encoded(self) -> bytes:
        """The JSON object as bytes, encoded on first use."""
        if self._bytes is None:
            self._bytes = orjson.dumps(self.json)
        return self._bytes


Keeps = Callable[[str, str], bool]
"""A client's service filter: (service name, service type) -> keep."""


class AlertFeed:
    """One streaming client's cursor in the hub's change log.

    `take()` returns what the client has not seen yet: first (when asked for) the current
    alerts, then every change since. Take `marker()` before `take()`, then wait on it.
    """

    def __init__(self, hub: AlertHub, *, current: bool) -> None:
        self._hub = hub
        self._position = hub.position
        self._backlog = hub.current(include_resolved=False) if current else []

    def marker(self) -> asyncio.Event:
        """The event the hub's next change sets."""
        return self._hub.change_marker()

    def take(self, keeps: Keeps | None = None) -> list[AlertEntry]:
        """The alerts to send now (oldest change first), limited to the services kept."""
        entries, self._backlog = self._backlog, []
        changes, self._position = self._hub.changes_after(self._position)
        entries.extend(changes)
        if keeps is None:
            return entries
        return [entry for entry in entries if keeps(entry.service_name, entry.service_type)]


class AlertHub(UpstreamLink):
    """The current alerts from one upstream subscription, and the log of their changes.

    `start()` opens the channel and the subscription task; `stop()` ends both (a second call
    is harmless). `synced` says whether the alerts reflect the aggregator right now.
    """

    def __init__(
        self,
        target: str,
        *,
        reconnect_initial_seconds: float = 0.2,
        reconnect_max_seconds: float = 5.0,
        wall: ReadClock,
        monotonic: ReadClock,
        log_size: int = LOG_SIZE,
        rng: Callable[[], float] = random.random,
        on_change: Callable[[], None] | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        super().__init__(
            target,
            "alerts",
            logger=log,
            reconnect_initial_seconds=reconnect_initial_seconds,
            reconnect_max_seconds=reconnect_max_seconds,
            monotonic=monotonic,
            rng=rng,
            tls=tls,
        )
        self.sequence = 0
        """The aggregator's sequence of the latest change applied (its resume point)."""
        self.changes_received = 0
        self._wall = wall
        self._alerts: dict[str, AlertEntry] = {}
        self._log: deque[tuple[int, AlertEntry]] = deque(maxlen=log_size)
        self.position = 0
        """How many changes the hub has published (the cursor of `AlertFeed`)."""
        self._changed = asyncio.Event()
        self._on_change = on_change
        """Called on every change too (the snapshot hub's wake-up, for the SSE streams)."""

    @property
    def stub(self) -> aggregator_pb2_grpc.AggregatorServiceStub:
        """A stub over the hub's channel, for the REST endpoints' unary calls."""
        return aggregator_pb2_grpc.AggregatorServiceStub(self.channel)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The hub's open channel, for unary calls to the aggregator's other services (OTLP)."""
        if self._channel is None:
            raise GatewayError("the gateway's aggregator channel is not open (not started?)")
        return self._channel

    # -- reading ---------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True when the alerts are the aggregator's, as of its latest change."""
        return self.state is UpstreamState.CONNECTED

    def current(self, *, include_resolved: bool = False) -> list[AlertEntry]:
        """The alerts, firing first; resolved ones (15 min at most) only when asked."""
        self._expire()
        entries = [entry for entry in self._alerts.values() if include_resolved or entry.active]
        entries.sort(key=lambda entry: alert_order(entry.alert))
        return entries

    def changes_after(self, position: int) -> tuple[list[AlertEntry], int]:
        """Changes after `position` and the new position; too far behind: the current alerts."""
        if position >= self.position:
            return [], self.position
        oldest = self._log[0][0] if self._log else self.position + 1
        if position + 1 < oldest:
            return self.current(include_resolved=True), self.position
        return [entry for at, entry in self._log if at > position], self.position

    def change_marker(self) -> asyncio.Event:
        """The event the next change (or state change) sets."""
        return self._changed

    # -- the subscription --------------------------------------------------------------------

    async def _run(self) -> None:
        delays = self._delays()
        assert self._channel is not None
        stub = aggregator_pb2_grpc.AggregatorServiceStub(self._channel)
        while True:
            try:
                listed = await stub.ListAlerts(
                    alerts_pb2.ListAlertsRequest(include_resolved=True),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
                self._replace(listed)
                call = stub.StreamAlerts(
                    alerts_pb2.StreamAlertsRequest(after_sequence=listed.last_sequence)
                )
                self.connects += 1
                self._set_state(UpstreamState.CONNECTED, None)
                delays = self._delays()
                async for message in call:
                    self._apply(message.change)
                reason = "the aggregator ended the alert stream"
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                reason = f"{error.code().name}: {error.details()}"
                if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                    reason = "it serves no alerts (UNIMPLEMENTED: an aggregator without alerts?)"
            except Exception as error:  # keep the subscription alive whatever happens
                log.exception("alert subscription to %s failed", self.target)
                reason = f"{type(error).__name__}: {error}"
            self._set_state(
                UpstreamState.DISCONNECTED, f"alerts of aggregator {self.target}: {reason}"
            )
            await asyncio.sleep(next(delays))

    def _replace(self, listed: alerts_pb2.ListAlertsResponse) -> None:
        """Take the aggregator's whole list; publish what differs from what the hub had."""
        fresh = {alert.id: alert for alert in listed.alerts}
        for gone in set(self._alerts) - set(fresh):
            del self._alerts[gone]
        for alert in sorted(fresh.values(), key=alert_order):
            old = self._alerts.get(alert.id)
            if old is None or old.alert != alert:
                self._publish(AlertEntry(alert))
        self.sequence = listed.last_sequence
        self._notify()

    def _apply(self, change: alerts_pb2.AlertChange) -> None:
        if change.sequence and change.sequence <= self.sequence:
            return  # already in the list the stream resumed after
        old = self._alerts.get(change.alert.id)
        if not change.sequence and old is not None and old.alert == change.alert:
            return  # a current alert the stream starts with, and the list had
        self.sequence = max(self.sequence, change.sequence)
        self.changes_received += 1
        self._publish(AlertEntry(change.alert))
        self._notify()

    def _publish(self, entry: AlertEntry) -> None:
        """Record a change: an inactive alert (a dropped pending one) leaves the current set."""
        if entry.alert.state == alerts_pb2.ALERT_STATE_INACTIVE:
            self._alerts.pop(entry.alert.id, None)
        else:
            self._alerts[entry.alert.id] = entry
        self.position += 1
        self._log.append((self.position, entry))

    def _expire(self) -> None:
        cutoff = self._wall() - RESOLVED_KEPT_SECONDS
        expired = [
            key
            for key, entry in self._alerts.items()
            if entry.alert.state == alerts_pb2.ALERT_STATE_RESOLVED
            and entry.alert.HasField("resolved_time")
            and to_seconds(entry.alert.resolved_time) < cutoff
        ]
        for key in expired:
            del self._alerts[key]

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        if self._on_change is not None:
            self._on_change()
