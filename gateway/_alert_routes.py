"""Seed 003's alert endpoints, over the aggregator's alert RPCs.

GET    /api/v1/alerts/rules              ListAlertRules
POST   /api/v1/alerts/rules              CreateAlertRule (the body's form: `_alert_forms`)
DELETE /api/v1/alerts/rules/{rule_id}    DeleteAlertRule
GET    /api/v1/alerts/active             the alert hub's current alerts (no call per request)
POST   /api/v1/alerts/resolve/{alert_id} ResolveAlert

The write endpoints need `Authorization: Bearer <token>` when `[gateway] admin_token` is set
(401 with `WWW-Authenticate: Bearer` otherwise, compared in constant time); the client's token
goes on to the aggregator as the call's `authorization` metadata, where the aggregator's own
check applies. The aggregator's refusals keep their meaning: INVALID_ARGUMENT is 422 with its
message and, as `field`, the field its status details name (`google.rpc.BadRequest`),
UNAUTHENTICATED 401, NOT_FOUND 404, FAILED_PRECONDITION 409,
UNAVAILABLE 503, UNIMPLEMENTED (an aggregator without alerts) 501. Every error body is
`{"detail": ..., "field": ...}`.

The alert list's `services` and `types` are checked as the REST body's are
(`gateway._views.view_of_query`, against the latest snapshot): an unknown name or type is a
422 naming it and the known ones, with `field` the parameter. Before the first snapshot the
names cannot be checked yet and are applied as given (as the REST endpoint does).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import grpc
import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from metricsmesh.v1 import alerts_pb2

from gateway._alert_forms import EXAMPLES, RuleForm, rule_from_form
from gateway._alert_models import ActiveAlerts, AlertError, AlertOut, AlertRuleList, AlertRuleOut
from gateway._errors import AlertFormError, AlertRequestError
from gateway._params import ServicesParam, TypesParam
from gateway._state import GatewayState
from gateway._views import SnapshotEntry, view_of_query
from mesh_common.alert_json import alert_json, alert_list_body, rule_json
from mesh_common.bounded import shorten
from mesh_common.errors import FilterError
from mesh_common.filters import ServiceFilter
from mesh_common.views import split_names

PREFIX = "/api/v1/alerts"
MAX_BODY_BYTES = 64 * 1024
"""Largest request body of an alert endpoint."""
CALL_TIMEOUT_SECONDS = 5.0
"""Deadline of each call to the aggregator."""
MAX_RESOLVED_BY = 200
"""Longest `resolved_by` text."""
CHALLENGE = 'Bearer realm="metrics-mesh"'

_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""The trailing metadata key of a call's `google.rpc.Status` (gRPC's richer error model)."""

Metadata = tuple[tuple[str, str], ...]


def refusal_response(error: AlertRequestError) -> JSONResponse:
    """The error answer: `{"detail", "field"}`, with `WWW-Authenticate` on a 401."""
    headers = {"WWW-Authenticate": error.challenge} if error.challenge else None
    return JSONResponse(
        {"detail": error.detail, "field": error.field}, error.status, headers=headers
    )


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None without one."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authorize(state: GatewayState, request: Request) -> Metadata:
    """Check the bearer token of a write request; the metadata that forwards it.

    Raises AlertRequestError(401) when a token is configured and the request's is absent or
    different.
    """
    given = bearer_token(request)
    wanted = state.settings.admin_token
    if wanted:
        if given is None:
            raise AlertRequestError(
                401,
                "this endpoint needs `Authorization: Bearer <token>` (the gateway's admin_token)",
                challenge=CHALLENGE,
            )
        if not hmac.compare_digest(given.encode(), wanted.encode()):
            raise AlertRequestError(
                401,
                "the bearer token is not the gateway's admin_token",
                challenge=CHALLENGE + ', error="invalid_token"',
            )
    return (("authorization", f"Bearer {given}"),) if given is not None else ()


def refusal_of(state: GatewayState, error: grpc.aio.AioRpcError) -> AlertRequestError:
    """The HTTP answer to a failed call to the aggregator."""
    code = error.code()
    details = error.details() or ""
    status = _HTTP_STATUS.get(code, 502)
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"the aggregator at {state.settings.aggregator} is unreachable ({details})"
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        details = f"the aggregator at {state.settings.aggregator} serves no alerts ({details})"
    elif status == 502:
        details = f"the aggregator answered {code.name}: {details}"
    field = violated_field(error) if status == 422 else None
    challenge = CHALLENGE if status == 401 else None
    return AlertRequestError(status, details, field=field, challenge=challenge)


def violated_field(error: grpc.aio.AioRpcError) -> str | None:
    """The field of the first `google.rpc.BadRequest` field violation in `error`'s status.

    The aggregator names a rule's wrong field so (the rule's JSON field names, those of the
    native form); an error without such details (or with details that contradict its code
    or message) names no field: the message is for people, never parsed.
    """
    status = status_details(error)
    for detail in status.details if status is not None else ():
        request = error_details_pb2.BadRequest()
        if not detail.Unpack(request):  # another detail type
            continue
        for violation in request.field_violations:
            if violation.field:
                return str(violation.field)
    return None


def status_details(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The `google.rpc.Status` an aio call failed with (`grpc_status.rpc_status.from_call`'s).

    Read from the trailing metadata `grpc-status-details-bin`; None when there is none, when
    it is not a Status, or when its code or message are not the call's own.
    """
    for key, value in error.trailing_metadata() or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        if status.code != error.code().value[0] or status.message != error.details():
            return None
        return status
    return None


def alert_filter(
    latest: SnapshotEntry | None, services: list[str] | None, types: list[str] | None
) -> ServiceFilter:
    """The alert list's `services` and `types`, checked as the REST endpoint checks them.

    Raises AlertRequestError(422) with the REST endpoint's message (the unknown names or
    types and the known ones, from `latest`'s rows) and `field` the parameter that names
    them. With no snapshot yet (`latest` None) nothing can be checked: the filter is as given.
    """
    for field, names, service_types in (("services", services, None), ("types", None, types)):
        try:
            view_of_query(latest, names, service_types, None)
        except FilterError as error:
            raise AlertRequestError(422, shorten(str(error)), field=field) from None
    return ServiceFilter.of(split_names(services), split_names(types))


async def read_json(request: Request, *, required: bool, limit: int = MAX_BODY_BYTES) -> Any:
    """The request's JSON body (None when empty and not required); AlertRequestError 413/422.

    A body over `limit` bytes is a 413 naming the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise AlertRequestError(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise AlertRequestError(413, f"the body is larger than {limit} bytes")
    if not body.strip():
        if required:
            raise AlertRequestError(422, "missing: the body must be a JSON object", field="body")
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise AlertRequestError(422, f"not JSON: {error}", field="body") from None


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": AlertError, "description": text}
    for status, text in (
        (401, "A bearer token is needed (or the aggregator refused it)."),
        (404, "No such rule or alert."),
        (409, "The rule is a configured one (read-only)."),
        (422, "The body is not a rule the aggregator accepts; `field` names what is wrong."),
        (501, "The aggregator serves no alerts."),
        (503, "The aggregator is unreachable."),
    )
}


Call = Callable[..., Awaitable[Any]]
"""`call(method, request, metadata=())`: one unary call to the aggregator (AlertRequestError)."""


def alert_router(state: GatewayState) -> APIRouter:
    """The alert endpoints of seed 003."""
    router = APIRouter(prefix=PREFIX, tags=["alerts"])
    call = aggregator_caller(state)
    for add_routes in (_rule_reads, _rule_writes, _active_alerts, _resolve_alerts):
        add_routes(router, state, call)
    return router


def aggregator_caller(state: GatewayState) -> Call:
    """Calls to the aggregator over the alert hub's channel, each with its deadline.

    A failed call raises the AlertRequestError of its HTTP answer (`refusal_of`).
    """
    hub = state.alerts

    async def call(method: str, request: Any, metadata: Metadata = ()) -> Any:
        try:
            return await getattr(hub.stub, method)(
                request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata
            )
        except grpc.aio.AioRpcError as error:
            raise refusal_of(state, error) from None

    return call


def _rule_reads(router: APIRouter, state: GatewayState, call: Call) -> None:
    @router.get(
        "/rules",
        response_model=AlertRuleList,
        responses=_ERRORS,
        summary="Every alert rule: the configured ones, then those created at run time",
    )
    async def list_rules() -> JSONResponse:
        """The rules in force (ListAlertRules)."""
        try:
            response = await call("ListAlertRules", alerts_pb2.ListAlertRulesRequest())
        except AlertRequestError as refusal:
            return refusal_response(refusal)
        rules = [rule_json(rule) for rule in response.rules]
        return JSONResponse({"rules": rules, "count": len(rules)})


def _rule_writes(router: APIRouter, state: GatewayState, call: Call) -> None:
    @router.post(
        "/rules",
        status_code=201,
        response_model=AlertRuleOut,
        responses=_ERRORS,
        summary="Create an alert rule (kept across aggregator restarts)",
        openapi_extra=_body(RuleForm.model_json_schema(), EXAMPLES, required=True),
    )
    async def create_rule(request: Request) -> JSONResponse:
        """The native form, seed 003's payload or seed 004's condition; 422 naming the field.

        Needs the bearer token when the gateway has an admin_token.
        """
        try:
            metadata = authorize(state, request)
            rule = _mapped(await read_json(request, required=True))
            response = await call(
                "CreateAlertRule", alerts_pb2.CreateAlertRuleRequest(rule=rule), metadata
            )
        except AlertRequestError as refusal:
            return refusal_response(refusal)
        return JSONResponse(rule_json(response.rule), 201)

    @router.delete(
        "/rules/{rule_id:path}",
        response_model=AlertRuleOut,
        responses=_ERRORS,
        summary="Delete an alert rule created at run time",
    )
    async def delete_rule(
        request: Request, rule_id: Annotated[str, Path(max_length=256)]
    ) -> JSONResponse:
        """The deleted rule; configured rules are read-only (409). Needs the bearer token."""
        try:
            metadata = authorize(state, request)
            response = await call(
                "DeleteAlertRule", alerts_pb2.DeleteAlertRuleRequest(id=rule_id), metadata
            )
        except AlertRequestError as refusal:
            return refusal_response(refusal)
        return JSONResponse(rule_json(response.rule))


def _active_alerts(router: APIRouter, state: GatewayState, call: Call) -> None:
    hub = state.alerts

    @router.get(
        "/active",
        response_model=ActiveAlerts,
        responses={
            422: {
                "model": AlertError,
                "description": "`services` or `types` names a service or type that does not "
                "exist (the detail lists the known ones).",
            },
            503: {"model": AlertError, "description": "No alert subscription."},
        },
        summary="The pending and firing alerts, firing first",
    )
    async def active(
        include_resolved: Annotated[
            bool, Query(description="Also the alerts resolved in the last 15 minutes.")
        ] = False,
        services: ServicesParam = None,
        types: TypesParam = None,
    ) -> JSONResponse:
        """From the gateway's alert subscription (no call to the aggregator per request).

        `services` and `types` select as on the REST endpoint; an unknown service or type is
        a 422 naming it and the known ones.
        """
        try:
            wanted = alert_filter(state.hub.latest, services, types)
        except AlertRequestError as refusal:
            return refusal_response(refusal)
        if not hub.synced:
            return refusal_response(
                AlertRequestError(503, hub.error or f"alert subscription {hub.state}")
            )
        entries = [
            entry
            for entry in hub.current(include_resolved=include_resolved)
            if wanted.keeps(entry.service_name, entry.service_type)
        ]
        pairs = ((entry.json, entry.alert.state) for entry in entries)
        return JSONResponse(alert_list_body(pairs, hub.sequence, state.clocks.wall()))


def _resolve_alerts(router: APIRouter, state: GatewayState, call: Call) -> None:
    @router.post(
        "/resolve/{alert_id:path}",
        response_model=AlertOut,
        responses=_ERRORS,
        summary="Resolve an alert by hand (silent until its condition has cleared once)",
        openapi_extra=_body(_RESOLVE_SCHEMA, {}, required=False),
    )
    async def resolve(
        request: Request, alert_id: Annotated[str, Path(max_length=512)]
    ) -> JSONResponse:
        """The alert after the resolve (ResolveAlert). Needs the bearer token.

        An optional body `{"resolved_by": "who"}` names who resolved it (default: the client).
        """
        try:
            metadata = authorize(state, request)
            who = _resolved_by(await read_json(request, required=False), request)
            response = await call(
                "ResolveAlert",
                alerts_pb2.ResolveAlertRequest(id=alert_id, resolved_by=who),
                metadata,
            )
        except AlertRequestError as refusal:
            return refusal_response(refusal)
        return JSONResponse(alert_json(response.alert))


def _mapped(body: Any) -> alerts_pb2.AlertRule:
    try:
        return rule_from_form(body)
    except AlertFormError as error:
        raise AlertRequestError(422, str(error), field=error.field) from None


def _resolved_by(body: Any, request: Request) -> str:
    if body is None:
        client = request.client.host if request.client else "unknown"
        return f"gateway API ({client})"
    who = body.get("resolved_by") if isinstance(body, dict) else None
    if not isinstance(who, str) or not who.strip() or len(who) > MAX_RESOLVED_BY:
        raise AlertRequestError(
            422,
            f"resolved_by: must be a non-empty text of at most {MAX_RESOLVED_BY} characters",
            field="resolved_by",
        )
    return who.strip()


_RESOLVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"resolved_by": {"type": "string", "maxLength": MAX_RESOLVED_BY}},
    "additionalProperties": False,
}


def _body(schema: dict[str, Any], examples: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that reads (and bounds) its body itself."""
    content: dict[str, Any] = {"schema": schema}
    if examples:
        content["examples"] = examples
    return {"requestBody": {"required": required, "content": {"application/json": content}}}
