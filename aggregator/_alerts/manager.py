"""The alert manager: evaluates every snapshot, keeps the alerts, feeds streams and delivery.

It is a snapshot observer of the round loop (its own task, latest snapshot wins), so a slow
evaluation or a slow store never delays a round. Each evaluation's changes are numbered
(`sequence`) and kept in a bounded log that StreamAlerts reads from; alerts and rules created
at run time are persisted in the `AlertStore`; changes are sent to Alertmanager at once, and
every firing (or recently resolved) alert again each resend interval.

Given the registry (`registry`, read when needed, so a replaced registry counts), the manager
refuses a rule that selects a service name or type the registry does not have: a configured
one at construction (ConfigError), one created at run time with RuleError (INVALID_ARGUMENT).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from metricsmesh.v1 import alerts_pb2

from aggregator._alerts.delivery import Delivery
from aggregator._alerts.engine import (
    Alert,
    Change,
    PushedReader,
    State,
    evaluate,
    resolve_by_hand,
)
from aggregator._alerts.rules import Rule, check_selection, rule_from_proto
from aggregator._alerts.settings import AlertSettings, check_configured_rules
from aggregator._alerts.store import AlertStore
from aggregator._convert import WholeSnapshots
from aggregator._errors import AlertNotFound, RuleError, RuleReadOnly
from aggregator._model import SnapshotData
from mesh_common.clocks import Clocks
from mesh_common.registry import Registry

_LOG = logging.getLogger(__name__)
ALERT_LOG = logging.getLogger("aggregator.alerts")
"""One line per state change of an alert."""

CHANGE_LOG_SIZE = 10_000
"""Changes kept for StreamAlerts resume points."""


@dataclass(frozen=True, slots=True)
class NumberedChange:
    """One change and its sequence number in this aggregator's lifetime."""

    sequence: int
    change: Change


class AlertManager:
    """Rules, alerts, the change log and delivery of one aggregator.

    `registry` returns the registry the rounds call (the round loop's, a pending replacement
    included); without it no rule's services and types are checked. `pushed` reads the
    series pushed to the mesh (`Ingestor.series.read`): rules watch them too (`engine.py`).
    Raises ConfigError when a configured rule selects a service name or type that registry
    does not have; with `check_configured` False (a fleet discovered at run time, whose
    services may come later) such a rule is logged as a warning at start instead.
    """

    def __init__(
        self,
        settings: AlertSettings,
        *,
        clocks: Clocks,
        persist: bool = True,
        whole: WholeSnapshots | None = None,
        registry: Callable[[], Registry] | None = None,
        pushed: PushedReader | None = None,
        check_configured: bool = True,
    ) -> None:
        self._registry = registry
        self._pushed = pushed
        """Reads the latest values of the pushed series (rules watch them too)."""
        if registry is not None and check_configured:
            check_configured_rules(settings.rules, registry())
        self._warn_configured = registry is not None and not check_configured
        self.settings = settings
        self._whole = whole or WholeSnapshots()
        """Each round's wire message, shared with the streams' unfiltered view."""
        self._clocks = clocks
        self._store = AlertStore(settings.state_path if persist else None)
        self._config_rules = list(settings.rules)
        self._api_rules: list[Rule] = []
        self.alerts: dict[str, Alert] = {}
        self._log: collections.deque[NumberedChange] = collections.deque(maxlen=CHANGE_LOG_SIZE)
        self._sequence = itertools.count(1)
        self.last_sequence = 0
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._delivery = Delivery(
            settings.alertmanagers,
            settings.webhook_url,
            resend_interval=settings.resend_interval_seconds,
            dashboard_url=settings.dashboard_url,
            wall=clocks.wall,
        )
        self._resender: asyncio.Task[None] | None = None
        self.evaluations = 0

    @property
    def rules(self) -> list[Rule]:
        """Every rule in force: the config file's first, then those created at run time."""
        return [*self._config_rules, *self._api_rules]

    async def start(self) -> None:
        """Load the persisted rules and alerts, and start the resend loop.

        A persisted rule that selects a service the registry no longer has is kept (it was
        valid when created; the registry may come back) and logged as a warning, as is a
        configured one not checked at construction (`check_configured`).
        """
        self._api_rules = await asyncio.to_thread(self._store.rules)
        if self._registry is not None:
            registry = self._registry()
            unchecked = self._config_rules if self._warn_configured else []
            origins = [("configured", rule) for rule in unchecked]
            origins += [("created at run time", rule) for rule in self._api_rules]
            for origin, rule in origins:
                try:
                    check_selection(rule, registry)
                except RuleError as error:
                    _LOG.warning(
                        "alert rule %s (%r, %s) matches no service: %s",
                        rule.id,
                        rule.name,
                        origin,
                        error,
                    )
        self.alerts = await asyncio.to_thread(self._store.alerts)
        if self._delivery.configured:
            self._resender = asyncio.get_running_loop().create_task(self._resend_loop())

    async def close(self) -> None:
        """Stop resending and sending; a second call is harmless."""
        task, self._resender = self._resender, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._delivery.close()
        self._store.close()

    async def observe(self, snapshot: SnapshotData) -> None:
        """Evaluate every rule on `snapshot` (the round loop's observer).

        With no rule and no alert there is nothing to evaluate: the round is not converted.
        """
        if not self._config_rules and not self._api_rules and not self.alerts:
            return
        message = self._whole.get(snapshot)
        async with self._lock:
            alerts, changes = evaluate(
                self.rules, message, self.alerts, self._clocks.wall(), self._pushed
            )
            self.evaluations += 1
            await self._apply(alerts, changes)

    async def create_rule(self, message: alerts_pb2.AlertRule) -> Rule:
        """Add a rule from its message (checked, kept in the store); RuleError if it is bad.

        Checked before it takes a rule number: its fields, then (with a registry) that the
        services and types it selects are known.
        """
        async with self._lock:
            if any(rule.name == message.name for rule in self.rules):
                raise RuleError("name", f"a rule called {message.name!r} exists already")
            rule = rule_from_proto(message, rule_id="", source="api")
            if self._registry is not None:
                check_selection(rule, self._registry())
            number = await asyncio.to_thread(self._store.next_rule_number)
            rule = dataclasses.replace(rule, id=f"rule-{number}")
            await asyncio.to_thread(self._store.add_rule, rule)
            self._api_rules.append(rule)
            return rule

    async def delete_rule(self, rule_id: str) -> Rule:
        """Delete a rule created at run time; its alerts resolve at the next evaluation."""
        async with self._lock:
            if any(rule.id == rule_id for rule in self._config_rules):
                raise RuleReadOnly(
                    f"rule {rule_id!r} comes from the config file; remove it there and restart"
                )
            rule = next((rule for rule in self._api_rules if rule.id == rule_id), None)
            if rule is None:
                raise AlertNotFound(f"no rule with id {rule_id!r}")
            await asyncio.to_thread(self._store.delete_rule, rule_id)
            self._api_rules.remove(rule)
            return rule

    async def resolve(self, alert_id: str, who: str) -> Alert:
        """Resolve an alert by hand: silent until its condition has cleared once."""
        async with self._lock:
            alert = self.alerts.get(alert_id)
            if alert is None or alert.state is State.RESOLVED:
                raise AlertNotFound(f"no pending or firing alert with id {alert_id!r}")
            now = self._clocks.wall()
            resolved = resolve_by_hand(alert, who or "anonymous", now)
            await self._apply(
                {**self.alerts, alert_id: resolved}, [Change(resolved, alert.state, now)]
            )
            return resolved

    def current(self, include_resolved: bool = False) -> list[Alert]:
        """The alerts, firing first, then pending, then (when asked) resolved."""
        order = {State.FIRING: 0, State.PENDING: 1, State.RESOLVED: 2}
        shown = [
            alert
            for alert in self.alerts.values()
            if include_resolved or alert.state is not State.RESOLVED
        ]
        return sorted(shown, key=lambda alert: (order[alert.state], alert.id))

    def changes_after(self, sequence: int) -> list[NumberedChange] | None:
        """The logged changes after `sequence`; None when the log no longer reaches back."""
        log = self._log
        if log and log[0].sequence > sequence + 1:
            return None
        return [item for item in log if item.sequence > sequence]

    def change_marker(self) -> asyncio.Event:
        """The event the next change sets (take it before reading, to miss nothing)."""
        return self._changed

    async def _apply(self, alerts: dict[str, Alert], changes: Sequence[Change]) -> None:
        before = self.alerts
        self.alerts = alerts
        for change in changes:
            self.last_sequence = next(self._sequence)
            self._log.append(NumberedChange(self.last_sequence, change))
            log_alert_change(change)
        if alerts != before:
            await asyncio.to_thread(self._store.save_alerts, list(alerts.values()))
        if changes:
            event, self._changed = self._changed, asyncio.Event()
            event.set()
            self._delivery.send([change.alert for change in changes if _delivered(change.alert)])

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resend_interval_seconds)
            try:
                self._delivery.send([alert for alert in self.alerts.values() if _delivered(alert)])
            except Exception:
                _LOG.exception("re-sending alerts failed; the loop goes on")


def log_alert_change(change: Change) -> None:
    """`alert NAME on SERVICE[/KIND]: FROM -> TO (value V)` on ALERT_LOG, with `extra` fields.

    The fields: alert (the rule's name), rule (its id), alert_id, service, kind, from, to,
    value. A firing alert is a warning, every other change info.
    """
    alert = change.alert
    where = alert.service_name + (f"/{alert.kind}" if alert.kind else "")
    value = alert.value
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    ALERT_LOG.log(
        logging.WARNING if alert.state is State.FIRING else logging.INFO,
        "alert %s on %s: %s -> %s (value %s)",
        alert.name,
        where,
        change.previous.value,
        alert.state.value,
        shown,
        extra={
            "alert": alert.name,
            "rule": alert.rule_id,
            "alert_id": alert.id,
            "service": alert.service_name,
            "kind": alert.kind,
            "from": change.previous.value,
            "to": alert.state.value,
            "value": value,
        },
    )


def _delivered(alert: Alert) -> bool:
    """Whether Alertmanager hears of `alert`: firing, or resolved after it fired.

    As from Prometheus, pending alerts are not sent.
    """
    return alert.state is State.FIRING or (
        alert.state is State.RESOLVED and alert.fired_time is not None
    )
