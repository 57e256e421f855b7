"""Seed 003's alert endpoints, SSE `event: alert`, the WebSocket's alerts, `metricsmesh_alerts`.

Against a real aggregator with a configured rule (a service that is not active fires at once)
and the same bearer token on the gateway and the aggregator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from metricsmesh.v1 import aggregator_pb2_grpc, alerts_pb2
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from aggregator._alerts.settings import AlertSettings
from gateway import GatewaySettings
from gateway._alert_models import ActiveAlerts, AlertOut, AlertRuleList, AlertRuleOut
from gateway._alert_routes import STATUS_DETAILS_KEY, alert_filter
from mesh_common.filters import ServiceFilter
from mesh_common.registry import DEFAULT_REGISTRY
from mesh_common.transport import listen
from tests.eventually import eventually
from tests.gateway_mesh import ADMIN_TOKEN, Mesh, running_mesh, serve_gateway
from tests.sse_client import STREAM, events
from tests.ws_client import until

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DOWN_RULE = {
    "name": "ServiceDown",
    "figure": "status",
    "comparator": "!=",
    "threshold": "active",
    "severity": "critical",
    # Longer than a round: a loaded test process that stalls its loop past one round's
    # deadline makes every service miss it, and that must not fire 15 alerts.
    "for_seconds": 0.5,
    "annotations": {"summary": "{service} is {value}"},
}
SEED_003 = {
    "name": "High CPU Alert",
    "metric_name": "cpu_usage_percent",
    "condition": "> 80",
    "threshold": 80.0,
    "severity": "high",
    "evaluation_interval": 60,
    "for_duration": 300,
    "annotations": {"description": "CPU usage is above 80% for 5 minutes"},
}
SEED_SUBSCRIBE_ALERTS = '{"type": "subscribe", "data": {"subscription": "alerts"}}'
pytestmark = pytest.mark.mesh(alert_rules=(DOWN_RULE,))


async def active(mesh: Mesh, **params: Any) -> dict[str, Any] | None:
    response = await mesh.http.get("/api/v1/alerts/active", params=params)
    return response.json() if response.status_code == 200 else None


async def firing(mesh: Mesh, service: str) -> dict[str, Any]:
    """The firing alert of `service`, once the gateway has it."""

    async def probe() -> dict[str, Any] | None:
        body = await active(mesh)
        found = [a for a in (body or {}).get("alerts", []) if a["service_name"] == service]
        return found[0] if found and found[0]["state"] == "firing" else None

    return await eventually(probe, what=f"a firing alert for {service}")


async def test_the_configured_rule_is_listed_in_the_native_form(mesh: Mesh) -> None:
    response = await mesh.http.get("/api/v1/alerts/rules")
    assert response.status_code == 200
    body = AlertRuleList.model_validate(response.json())
    assert body.count == 1
    (rule,) = body.rules
    assert (rule.name, rule.figure, rule.comparator, rule.threshold_text) == (
        "ServiceDown", "status", "!=", "active",
    )  # fmt: skip
    assert rule.source == "config" and rule.severity == "critical"


async def test_seed_003s_own_payload_is_a_rule_on_the_services_cpu(mesh: Mesh) -> None:
    created = await mesh.http.post("/api/v1/alerts/rules", json=SEED_003, headers=AUTH)
    assert created.status_code == 201, created.text
    rule = AlertRuleOut.model_validate(created.json())
    assert (rule.figure, rule.comparator, rule.threshold) == ("cpu_usage_percent", ">", 80.0)
    assert rule.severity == "high" and rule.for_seconds == 300.0


async def test_create_list_and_delete_a_rule_in_seed_003s_form(mesh: Mesh) -> None:
    body = {**SEED_003, "metric_name": "avg_response_time"}
    created = await mesh.http.post("/api/v1/alerts/rules", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    rule = AlertRuleOut.model_validate(created.json())
    assert (rule.figure, rule.comparator, rule.threshold) == ("latency_avg_ms", ">", 80.0)
    assert rule.for_seconds == 300.0 and rule.source == "api" and rule.id
    listed = (await mesh.http.get("/api/v1/alerts/rules")).json()
    assert [r["name"] for r in listed["rules"]] == ["ServiceDown", "High CPU Alert"]
    deleted = await mesh.http.delete(f"/api/v1/alerts/rules/{rule.id}", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["id"] == rule.id
    listed = (await mesh.http.get("/api/v1/alerts/rules")).json()
    assert [r["name"] for r in listed["rules"]] == ["ServiceDown"]
    again = await mesh.http.delete(f"/api/v1/alerts/rules/{rule.id}", headers=AUTH)
    assert again.status_code == 404
    config = await mesh.http.delete("/api/v1/alerts/rules/config-1", headers=AUTH)
    assert config.status_code == 409  # configured rules are read-only


async def test_a_seed_004_condition_is_a_rule_too(mesh: Mesh) -> None:
    body = {"name": "high_error_rate", "condition": "error_rate > 0.05", "severity": "critical"}
    created = await mesh.http.post("/api/v1/alerts/rules", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["figure"] == "error_rate" and created.json()["threshold"] == 0.05


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({**SEED_003, "metric_name": "disk_usage_percent"}, "figure", "disk_usage_percent"),
        ({**DOWN_RULE, "name": "x", "severity": "urgent"}, "severity", "urgent"),
        ({**DOWN_RULE, "name": "x", "threshold": "sleepy"}, "threshold", "status"),
        ({"name": "x", "condition": "error_rate is high"}, "condition", "not a condition"),
        (
            {"name": "x", "figure": "error_rate", "comparator": ">", "threshold": "lots"},
            "threshold",
            "number",
        ),
    ],
)
async def test_a_bad_rule_is_a_422_naming_the_field(
    mesh: Mesh, body: dict[str, Any], field: str, words: str
) -> None:
    response = await mesh.http.post("/api/v1/alerts/rules", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    refusal = response.json()
    assert refusal["field"] == field
    assert words in refusal["detail"]


@pytest.mark.parametrize(
    ("selector", "field", "words"),
    [
        ({"service_names": ["weather-api", "nosuch"]}, "service_names", "service name 'nosuch'"),
        ({"service_types": ["quantum"]}, "service_types", "service type 'quantum'"),
    ],
)
async def test_a_rule_on_an_unknown_service_or_type_is_a_422_naming_it(
    mesh: Mesh, selector: dict[str, list[str]], field: str, words: str
) -> None:
    body = {**DOWN_RULE, "name": "Typo", **selector}
    response = await mesh.http.post("/api/v1/alerts/rules", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    refusal = response.json()
    assert refusal["field"] == field
    assert refusal["detail"].startswith(f"rule field '{field}': unknown {words}; known: ")
    known = (
        ", ".join(sorted(DEFAULT_REGISTRY.types))
        if field == "service_types"
        else DEFAULT_REGISTRY.names[0]
    )
    assert known in refusal["detail"]
    listed = (await mesh.http.get("/api/v1/alerts/rules")).json()
    assert [r["name"] for r in listed["rules"]] == ["ServiceDown"]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"services": "weather-api,nosuch"}, "services", "unknown service name 'nosuch'; known: "),
        ({"types": "quantum"}, "types", "unknown service type 'quantum'; known: ai, analysis"),
        ({"services": "weather-api", "types": "data,quantum"}, "types", "type 'quantum';"),
    ],
)
async def test_the_alert_list_refuses_an_unknown_service_or_type_as_the_rest_body_does(
    mesh: Mesh, params: dict[str, str], field: str, words: str
) -> None:
    response = await mesh.http.get("/api/v1/alerts/active", params=params)
    assert response.status_code == 422, response.text
    refusal = response.json()
    assert refusal["field"] == field and words in refusal["detail"]
    rest = await mesh.http.get("/api/v1/real-time-metrics", params=params)
    assert rest.status_code == 422
    assert refusal["detail"] == rest.json()["detail"]  # the same message, word for word
    known = await mesh.http.get("/api/v1/alerts/active", params={"services": "weather-api"})
    assert known.status_code == 200 and known.json()["alerts"] == []


def test_before_the_first_snapshot_the_alert_list_takes_the_names_as_given() -> None:
    assert alert_filter(None, ["nosuch,weather-api"], ["quantum"]) == ServiceFilter.of(
        ["nosuch", "weather-api"], ["quantum"]
    )


async def test_a_body_that_is_not_json_or_too_big_is_refused(mesh: Mesh) -> None:
    url = "/api/v1/alerts/rules"
    broken = await mesh.http.post(url, content=b"{nope", headers=AUTH)
    assert broken.status_code == 422 and broken.json()["field"] == "body"
    empty = await mesh.http.post(url, headers=AUTH)
    assert empty.status_code == 422 and empty.json()["field"] == "body"
    huge = await mesh.http.post(url, content=b" " * 70_000, headers=AUTH)
    assert huge.status_code == 413 and "65536" in huge.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/alerts/rules"),
        ("DELETE", "/api/v1/alerts/rules/anything"),
        ("POST", "/api/v1/alerts/resolve/anything"),
    ],
)
async def test_write_endpoints_need_the_bearer_token(mesh: Mesh, method: str, path: str) -> None:
    body = json.dumps(DOWN_RULE).encode()
    missing = await mesh.http.request(method, path, content=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await mesh.http.request(
        method, path, content=body, headers={"Authorization": "Bearer not-it"}
    )
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    basic = await mesh.http.request(
        method, path, content=body, headers={"Authorization": f"Basic {ADMIN_TOKEN}"}
    )
    assert basic.status_code == 401
    # Reading needs no token.
    assert (await mesh.http.get("/api/v1/alerts/rules")).status_code == 200


async def test_the_aggregator_checks_the_forwarded_token_itself(tmp_path: Path) -> None:
    alerts = AlertSettings(state_dir=str(tmp_path), admin_token=ADMIN_TOKEN)
    async with running_mesh(alerts=alerts) as mesh:  # the gateway itself wants no token
        await mesh.metrics()
        url = "/api/v1/alerts/rules"
        refused = await mesh.http.post(url, json=DOWN_RULE)
        assert refused.status_code == 401 and "admin_token" in refused.json()["detail"]
        assert refused.headers["www-authenticate"].startswith("Bearer")
        accepted = await mesh.http.post(url, json=DOWN_RULE, headers=AUTH)
        assert accepted.status_code == 201, accepted.text


async def test_a_stopped_service_fires_and_a_resolve_by_hand_silences_it(mesh: Mesh) -> None:
    await mesh.agents["calendar-service"].stop(0)
    alert = AlertOut.model_validate(await firing(mesh, "calendar-service"))
    assert (alert.name, alert.severity, alert.service_type) == ("ServiceDown", "critical", "data")
    assert alert.value is None and alert.value_text == "inactive"
    assert alert.annotations["summary"] == "calendar-service is inactive"
    assert alert.active_time is not None and alert.active_time.endswith("Z")
    assert alert.fired_time is not None and alert.resolved_time is None
    body = ActiveAlerts.model_validate(await active(mesh))
    assert (body.firing, body.pending) == (1, 0) and body.sequence >= 1
    assert (await active(mesh, services="weather-api"))["alerts"] == []
    assert len((await active(mesh, types="data"))["alerts"]) == 1

    resolved = await mesh.http.post(
        f"/api/v1/alerts/resolve/{alert.id}", json={"resolved_by": "alice"}, headers=AUTH
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["state"] == "resolved" and resolved.json()["resolved_by"] == "alice"

    async def gone() -> dict[str, Any] | None:
        body = await active(mesh)
        return body if body is not None and not body["alerts"] else None

    await eventually(gone, what="the resolved alert to leave the active ones")
    kept = await active(mesh, include_resolved="true")
    assert kept is not None
    assert [(a["id"], a["state"]) for a in kept["alerts"]] == [(alert.id, "resolved")]
    unknown = await mesh.http.post("/api/v1/alerts/resolve/no-such-alert", headers=AUTH)
    assert unknown.status_code == 404


async def test_metrics_has_one_alerts_series_per_firing_alert(mesh: Mesh) -> None:
    await mesh.agents["sports-data"].stop(0)
    await firing(mesh, "sports-data")
    text = (await mesh.http.get("/metrics")).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "metricsmesh_alerts"]
    # Only sports-data's: on a loaded machine another agent may miss a round's deadline.
    samples = [s for s in family.samples if s.labels["service"] == "sports-data"]
    assert [(s.labels, s.value) for s in samples] == [
        (
            {
                "alertname": "ServiceDown",
                "alertstate": "firing",
                "service": "sports-data",
                "severity": "critical",
                "kind": "",
            },
            1.0,
        )
    ]


async def test_sse_sends_an_alert_event_on_every_change(mesh: Mesh) -> None:
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        async with mesh.http.stream("GET", STREAM, params={"types": "data"}) as response:
            async for event in events(response):
                if event.name == "alert":
                    assert event.id is None  # ids are snapshot positions only
                    seen.append(event.json())

    reader = asyncio.create_task(read())
    try:
        await mesh.agents["admin-api"].stop(0)  # core: filtered out of this stream
        await mesh.agents["weather-api"].stop(0)
        first = await eventually(
            lambda: [a for a in seen if a["state"] == "firing"], what="an alert event"
        )
        assert [a["service_name"] for a in first] == ["weather-api"]
        assert first[0]["name"] == "ServiceDown"
        await mesh.http.post(f"/api/v1/alerts/resolve/{first[0]['id']}", headers=AUTH)
        resolved = await eventually(
            lambda: [a for a in seen if a["state"] == "resolved"], what="the resolve as an event"
        )
        assert resolved[0]["resolved_by"].startswith("gateway API")
    finally:
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader


async def test_a_new_sse_client_gets_the_current_alerts_first(mesh: Mesh) -> None:
    await mesh.agents["data-api"].stop(0)
    await firing(mesh, "data-api")
    async with mesh.http.stream("GET", STREAM) as response:
        async for event in events(response):
            if event.name == "alert":
                assert event.json()["service_name"] == "data-api"
                break


async def test_websocket_alerts_with_seed_003s_subscribe_message(mesh: Mesh) -> None:
    await mesh.agents["log-aggregator"].stop(0)
    await firing(mesh, "log-aggregator")
    async with connect(mesh.ws_url) as client:
        welcome = await until(client, "welcome")
        assert "alerts" in welcome["known_metric_types"]
        await client.send(SEED_SUBSCRIBE_ALERTS)
        confirmed = await until(client, "subscription_confirmed")
        assert confirmed["metric_types"] == ["alerts"]
        current = await until(client, "alert")  # the current one at once
        assert current["data"]["service_name"] == "log-aggregator"
        assert current["data"]["state"] == "firing"
        await mesh.agents["energy-correlator"].stop(0)
        states = []
        while states[-1:] != ["firing"]:  # every change of its alert, in order
            change = await until(client, "alert")
            if change["data"]["service_name"] == "energy-correlator":
                states.append(change["data"]["state"])
        assert states == ["pending", "firing"]
        with pytest.raises(TimeoutError):  # alerts only: no snapshot updates
            await until(client, "metric_update")


async def test_websocket_alerts_follow_the_filters(mesh: Mesh) -> None:
    async with connect(mesh.ws_url) as client:
        await until(client, "welcome")
        await client.send(
            json.dumps({"type": "set_filters", "filters": {"service_types": ["analysis"]}})
        )
        await until(client, "filters_updated")
        await client.send(json.dumps({"type": "subscribe", "metric_types": ["alerts"]}))
        await until(client, "subscription_confirmed")
        await mesh.agents["enrichment-pipeline"].stop(0)  # core: not this client's
        await mesh.agents["energy-correlator"].stop(0)  # analysis
        message = await until(client, "alert")
        assert message["data"]["service_name"] == "energy-correlator"
        await client.send(json.dumps({"type": "unsubscribe", "metric_types": ["alerts"]}))
        await until(client, "unsubscription_confirmed")


async def test_without_an_aggregator_the_alert_endpoints_say_so(mesh: Mesh) -> None:
    await mesh.stop_aggregator()
    refused = await eventually(
        lambda: _status(mesh.http, "/api/v1/alerts/active", 503), what="a 503 from /active"
    )
    assert str(mesh.aggregator_port) in refused["detail"]
    rules = await mesh.http.get("/api/v1/alerts/rules")
    assert rules.status_code == 503 and "unreachable" in rules.json()["detail"]
    await mesh.start_aggregator()
    await eventually(lambda: active(mesh), what="the alert subscription to come back")


async def _status(http: httpx.AsyncClient, path: str, status: int) -> dict[str, Any] | None:
    response = await http.get(path)
    return response.json() if response.status_code == status else None  # type: ignore[no-any-return]


async def test_docs_show_the_alert_endpoints_and_models(mesh: Mesh) -> None:
    spec = (await mesh.http.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/api/v1/alerts/rules"]) == {"get", "post"}
    assert "delete" in paths["/api/v1/alerts/rules/{rule_id}"]
    assert "get" in paths["/api/v1/alerts/active"]
    assert "post" in paths["/api/v1/alerts/resolve/{alert_id}"]
    body = paths["/api/v1/alerts/rules"]["post"]["requestBody"]["content"]["application/json"]
    assert {"metric_name", "condition", "for_duration", "figure"} <= set(
        body["schema"]["properties"]
    )
    assert {"AlertOut", "AlertRuleOut", "ActiveAlerts", "AlertRuleList"} <= set(
        spec["components"]["schemas"]
    )


@pytest.mark.parametrize(
    ("method", "path", "detail"),
    [
        ("DELETE", "/api/v1/alerts/rules/no-such-rule", "no rule with id 'no-such-rule'"),
        (
            "POST",
            "/api/v1/alerts/resolve/no-such-alert",
            "no pending or firing alert with id 'no-such-alert'",
        ),
    ],
)
async def test_a_404_says_what_is_missing_in_plain_words(
    mesh: Mesh, method: str, path: str, detail: str
) -> None:
    response = await mesh.http.request(method, path, headers=AUTH)
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": detail, "field": None}  # not the text's repr


REFUSAL = "threshold_text must be one of active, inactive, error"
"""A refusal's message, worded so no pattern over it could find the field."""


class RefusingAggregator(aggregator_pb2_grpc.AggregatorServiceServicer):
    """A stand-in aggregator whose CreateAlertRule refuses every rule as INVALID_ARGUMENT.

    With `violated` it names that field the way the aggregator does (a `google.rpc.Status`
    with a BadRequest field violation in the trailing metadata); without, the message alone.
    """

    def __init__(self, message: str, violated: str | None) -> None:
        self.message = message
        self.trailing_metadata: tuple[tuple[str, bytes], ...] = ()
        if violated is not None:
            violation = error_details_pb2.BadRequest.FieldViolation(
                field=violated, description=message
            )
            status = status_pb2.Status(
                code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=message
            )
            status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
            self.trailing_metadata = ((STATUS_DETAILS_KEY, status.SerializeToString()),)

    async def CreateAlertRule(
        self, request: alerts_pb2.CreateAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.CreateAlertRuleResponse:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, self.message, trailing_metadata=self.trailing_metadata
        )


@asynccontextmanager
async def gateway_of(servicer: RefusingAggregator) -> AsyncIterator[httpx.AsyncClient]:
    """A real gateway in front of `servicer` on a real gRPC server; an HTTP client of it."""
    server = grpc.aio.server()
    aggregator_pb2_grpc.add_AggregatorServiceServicer_to_server(servicer, server)
    port = listen(server, "127.0.0.1", 0)
    await server.start()
    try:
        settings = GatewaySettings(aggregator=f"127.0.0.1:{port}")
        async with (
            serve_gateway(settings) as (_, gateway_port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway_port}") as http,
        ):
            yield http
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    ("message", "violated", "field"),
    [
        (REFUSAL, "threshold_text", "threshold_text"),
        (REFUSAL, "keep_firing_for_seconds", "keep_firing_for_seconds"),
        (REFUSAL, None, None),
        ("rule field 'threshold': must be a number", None, None),  # text, not a protocol
    ],
)
async def test_the_422s_field_is_the_one_the_status_details_name(
    message: str, violated: str | None, field: str | None
) -> None:
    """The field comes from the refusal's BadRequest details; without them, no field at all.

    Never guessed from the message. (A stand-in aggregator until the aggregator sends the
    details itself; then test_a_bad_rule_is_a_422_naming_the_field covers it end to end.)
    """
    async with gateway_of(RefusingAggregator(message, violated)) as http:
        response = await http.post("/api/v1/alerts/rules", json=DOWN_RULE)
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": message, "field": field}
