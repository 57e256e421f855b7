"""The alert RPCs of AggregatorService: rules, alerts, resolve and the stream of changes.

Write RPCs (CreateAlertRule, DeleteAlertRule, ResolveAlert) need `authorization: Bearer
<token>` in the call metadata when `[alerts] admin_token` is set (UNAUTHENTICATED otherwise;
compared with hmac.compare_digest).

A rule CreateAlertRule refuses is INVALID_ARGUMENT, and the field is sent as data, not only
in the text: the status details (`grpc-status-details-bin`, a `google.rpc.Status`) hold one
`google.rpc.BadRequest` whose single field violation has `field` = the rule's key as the
gateway's native JSON form and the mesh file spell it (`name`, `figure`, `comparator`,
`threshold`, `clear_threshold`, `for_seconds`, `keep_firing_for_seconds`, `severity`,
`service_names`, `service_types`, `labels`, `annotations`) and `description` = the reason.
The status message stays `rule field 'FIELD': REASON`. Read it with grpcio-status:
`rpc_status.from_call(error)`, then unpack `details[0]` as a `BadRequest`.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from metricsmesh.v1 import alerts_pb2

from aggregator._alerts.engine import Alert, State
from aggregator._alerts.manager import AlertManager, NumberedChange
from aggregator._alerts.rules import rule_to_proto
from aggregator._errors import AlertNotFound, RuleError, RuleReadOnly
from mesh_common.grpc_input import Implementation
from mesh_common.severity import Severity, to_wire
from mesh_common.wire_time import set_seconds

Context = grpc.aio.ServicerContext[Any, Any]

_STATES = {
    State.INACTIVE: alerts_pb2.ALERT_STATE_INACTIVE,
    State.PENDING: alerts_pb2.ALERT_STATE_PENDING,
    State.FIRING: alerts_pb2.ALERT_STATE_FIRING,
    State.RESOLVED: alerts_pb2.ALERT_STATE_RESOLVED,
}


def alert_to_proto(alert: Alert) -> alerts_pb2.Alert:
    """The Alert message of an alert."""
    message = alerts_pb2.Alert(
        id=alert.id,
        rule_id=alert.rule_id,
        name=alert.name,
        service_name=alert.service_name,
        service_type=alert.service_type,
        kind=alert.kind,
        state=_STATES[alert.state],
        severity=alert.severity,
        severity_level=to_wire(Severity(alert.severity)),
        resolved_by=alert.resolved_by,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
    )
    if isinstance(alert.value, str):
        message.value_text = alert.value
    elif alert.value is not None:
        message.value = alert.value
    set_seconds(message.active_time, alert.active_time)
    if alert.fired_time is not None:
        set_seconds(message.fired_time, alert.fired_time)
    if alert.resolved_time is not None:
        set_seconds(message.resolved_time, alert.resolved_time)
    return message


def change_to_proto(item: NumberedChange) -> alerts_pb2.AlertChange:
    """The AlertChange message of a numbered change."""
    message = alerts_pb2.AlertChange(
        sequence=item.sequence,
        alert=alert_to_proto(item.change.alert),
        previous_state=_STATES[item.change.previous],
    )
    set_seconds(message.change_time, item.change.time)
    return message


class AlertServicer:
    """The alert RPCs, over one `AlertManager`."""

    def __init__(self, manager: AlertManager) -> None:
        self._manager = manager
        self._token = manager.settings.admin_token

    def implementations(self) -> dict[str, Implementation]:
        """The alert methods of AggregatorService by .proto name."""
        return {
            "ListAlertRules": self.list_rules,
            "CreateAlertRule": self.create_rule,
            "DeleteAlertRule": self.delete_rule,
            "ListAlerts": self.list_alerts,
            "ResolveAlert": self.resolve,
            "StreamAlerts": self.stream,
        }

    async def list_rules(
        self, request: alerts_pb2.ListAlertRulesRequest, context: Context
    ) -> alerts_pb2.ListAlertRulesResponse:
        """Every rule in force."""
        return alerts_pb2.ListAlertRulesResponse(
            rules=[rule_to_proto(rule) for rule in self._manager.rules]
        )

    async def create_rule(
        self, request: alerts_pb2.CreateAlertRuleRequest, context: Context
    ) -> alerts_pb2.CreateAlertRuleResponse:
        """Add a rule (kept across restarts)."""
        await self._authorize(context)
        try:
            rule = await self._manager.create_rule(request.rule)
        except RuleError as error:
            refusal = invalid_rule_status(error)
            await context.abort(refusal.code, refusal.details, refusal.trailing_metadata)
        return alerts_pb2.CreateAlertRuleResponse(rule=rule_to_proto(rule))

    async def delete_rule(
        self, request: alerts_pb2.DeleteAlertRuleRequest, context: Context
    ) -> alerts_pb2.DeleteAlertRuleResponse:
        """Remove a rule created at run time."""
        await self._authorize(context)
        try:
            rule = await self._manager.delete_rule(request.id)
        except AlertNotFound as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        except RuleReadOnly as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        return alerts_pb2.DeleteAlertRuleResponse(rule=rule_to_proto(rule))

    async def list_alerts(
        self, request: alerts_pb2.ListAlertsRequest, context: Context
    ) -> alerts_pb2.ListAlertsResponse:
        """The current alerts, firing first."""
        manager = self._manager
        return alerts_pb2.ListAlertsResponse(
            alerts=[alert_to_proto(alert) for alert in manager.current(request.include_resolved)],
            last_sequence=manager.last_sequence,
        )

    async def resolve(
        self, request: alerts_pb2.ResolveAlertRequest, context: Context
    ) -> alerts_pb2.ResolveAlertResponse:
        """Resolve an alert by hand."""
        await self._authorize(context)
        try:
            alert = await self._manager.resolve(request.id, request.resolved_by)
        except AlertNotFound as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        return alerts_pb2.ResolveAlertResponse(alert=alert_to_proto(alert))

    async def stream(
        self, request: alerts_pb2.StreamAlertsRequest, context: Context
    ) -> AsyncIterator[alerts_pb2.StreamAlertsResponse]:
        """Every change after the resume point (or every current alert first), then live."""
        manager = self._manager
        cursor = request.after_sequence
        marker = manager.change_marker()
        backlog = manager.changes_after(cursor) if cursor else None
        if backlog is None:  # a fresh start, or a resume point the log no longer holds
            for alert in manager.current(include_resolved=True):
                yield _response(alert)
            cursor = manager.last_sequence
        else:
            for item in backlog:
                yield alerts_pb2.StreamAlertsResponse(change=change_to_proto(item))
                cursor = item.sequence
        while True:
            await marker.wait()
            marker = manager.change_marker()
            live = manager.changes_after(cursor)
            if live is None:  # this stream fell behind the log: start again from the state
                for alert in manager.current(include_resolved=True):
                    yield _response(alert)
                cursor = manager.last_sequence
                continue
            for item in live:
                yield alerts_pb2.StreamAlertsResponse(change=change_to_proto(item))
                cursor = item.sequence

    async def _authorize(self, context: Context) -> None:
        if not self._token:
            return
        given = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode("latin-1")
        expected = f"Bearer {self._token}"
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "this call changes alerts: send `authorization: Bearer <token>` metadata "
                "with the aggregator's [alerts] admin_token",
            )


def invalid_rule_status(error: RuleError) -> grpc.Status:
    """INVALID_ARGUMENT with `error`'s text, and its field as a BadRequest field violation."""
    return invalid_argument_status(error.field, error.reason, str(error))


def invalid_argument_status(field: str, description: str, message: str) -> grpc.Status:
    """INVALID_ARGUMENT with `message`, and one BadRequest field violation (`field`, why).

    The one helper for every refusal that names a request's field (alert rules, history
    queries), so a client reads the field from the status details, never from the text.
    """
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])
    refusal: grpc.Status = rpc_status.to_status(status)
    return refusal


def _response(alert: Alert) -> alerts_pb2.StreamAlertsResponse:
    """A current alert, sent as a change from unspecified at the start of a stream."""
    return alerts_pb2.StreamAlertsResponse(
        change=alerts_pb2.AlertChange(
            sequence=0,
            alert=alert_to_proto(alert),
            previous_state=alerts_pb2.ALERT_STATE_UNSPECIFIED,
        )
    )
