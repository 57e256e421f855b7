"""Alerts and alert rules as JSON: the objects every surface serves, and the list body.

Every surface (the gateway's REST, SSE `event: alert`, the WebSocket's `alert` messages, the
dashboard, and the CLI's `alerts -o json`) uses `alert_json()` and `rule_json()`: the
contract's snake_case field names, the state as a word, times as ISO 8601 UTC (null when
unset), durations in seconds. The gateway's /docs models of them are `gateway._alert_models`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from metricsmesh.v1 import alerts_pb2

from mesh_common.severity import rank, severity_of
from mesh_common.wire_time import iso_utc, to_seconds

STATE_NAMES: dict[int, str] = {
    alerts_pb2.ALERT_STATE_PENDING: "pending",
    alerts_pb2.ALERT_STATE_FIRING: "firing",
    alerts_pb2.ALERT_STATE_RESOLVED: "resolved",
    alerts_pb2.ALERT_STATE_INACTIVE: "inactive",
}
"""Wire states -> the words of the JSON (inactive: a pending alert dropped; only in changes)."""
ACTIVE_STATES = frozenset({alerts_pb2.ALERT_STATE_PENDING, alerts_pb2.ALERT_STATE_FIRING})
"""The states of an alert that is not over."""
_STATE_RANK = {
    alerts_pb2.ALERT_STATE_FIRING: 0,
    alerts_pb2.ALERT_STATE_PENDING: 1,
    alerts_pb2.ALERT_STATE_RESOLVED: 2,
}

State = Literal["pending", "firing", "resolved", "inactive"]


def state_name(state: int) -> str:
    """The JSON word of a wire state (`unspecified` for the zero value)."""
    return STATE_NAMES.get(state, "unspecified")


TimeField = Literal["active_time", "fired_time", "resolved_time"]


def _time(alert: alerts_pb2.Alert, name: TimeField) -> str | None:
    return iso_utc(to_seconds(getattr(alert, name))) if alert.HasField(name) else None


def alert_json(alert: alerts_pb2.Alert) -> dict[str, Any]:
    """One alert as a JSON object (the fields of `AlertOut`)."""
    text = alert.value_text
    return {
        "id": alert.id,
        "rule_id": alert.rule_id,
        "name": alert.name,
        "service_name": alert.service_name,
        "service_type": alert.service_type,
        "kind": alert.kind,
        "state": state_name(alert.state),
        "severity": severity_of(alert),
        "value": None if text else alert.value,
        "value_text": text,
        "active_time": _time(alert, "active_time"),
        "fired_time": _time(alert, "fired_time"),
        "resolved_time": _time(alert, "resolved_time"),
        "resolved_by": alert.resolved_by,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
    }


def rule_json(rule: alerts_pb2.AlertRule) -> dict[str, Any]:
    """One rule as a JSON object, in the native form `POST /api/v1/alerts/rules` accepts."""
    return {
        "id": rule.id,
        "name": rule.name,
        "figure": rule.figure,
        "comparator": rule.comparator,
        "threshold": rule.threshold,
        "threshold_text": rule.threshold_text,
        "clear_threshold": rule.clear_threshold if rule.HasField("clear_threshold") else None,
        "for_seconds": to_seconds(rule.for_duration),
        "keep_firing_for_seconds": to_seconds(rule.keep_firing_for),
        "severity": severity_of(rule),
        "service_names": list(rule.service_names),
        "service_types": list(rule.service_types),
        "kinds": list(rule.kinds),
        "labels": dict(rule.labels),
        "annotations": dict(rule.annotations),
        "source": rule.source,
    }


def alert_list_body(
    alerts: Iterable[tuple[dict[str, Any], int]], sequence: int, wall: float
) -> dict[str, Any]:
    """The body of GET /api/v1/alerts/active from (alert JSON, AlertState) pairs, in order.

    `{"alerts", "firing", "pending", "sequence", "timestamp"}`: the alerts, how many of them
    fire and how many are pending, the aggregator's last change sequence, the time (`wall`).
    """
    listed = list(alerts)
    return {
        "alerts": [data for data, _ in listed],
        "firing": sum(state == alerts_pb2.ALERT_STATE_FIRING for _, state in listed),
        "pending": sum(state == alerts_pb2.ALERT_STATE_PENDING for _, state in listed),
        "sequence": sequence,
        "timestamp": iso_utc(wall),
    }


def alert_order(alert: alerts_pb2.Alert) -> tuple[int, int, float, str]:
    """Sort key: firing, then pending, then resolved; most severe, then longest active first."""
    return (
        _STATE_RANK.get(alert.state, 3),
        rank(severity_of(alert)),
        to_seconds(alert.active_time),
        alert.id,
    )
