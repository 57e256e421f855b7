"""Services that are down: their rows keep the last known figures with their age, nothing
counts them as live (totals, Prometheus, alert rules), and one never seen has nulls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from metricsmesh.v1 import event_rate_pb2, snapshot_pb2
from prometheus_client.parser import text_string_to_metric_families

from aggregator import DEFAULT_REGISTRY, Registry
from aggregator._alerts.engine import State, evaluate
from aggregator._alerts.rules import Rule, check_rule
from aggregator._convert import snapshot_to_proto
from aggregator._fanout import parse_figures
from aggregator._fold import Backoff, RoundTimes, fold_round
from aggregator._model import CallResult, Health, Outcome
from gateway._models import RealTimeMetrics
from tests.eventually import eventually
from tests.gateway_mesh import ROUND_SECONDS, Mesh

pytestmark = pytest.mark.mesh(wait="nothing")

STOPPED = "weather-api"
"""A data service (source `weather`) whose agent the tests stop."""
FIGURES = ("events_per_second", "events_per_hour", "total_events", "window_events")
KEPT = (*FIGURES, "window_errors", "total_errors", "error_rate", "latency_p99_ms", "kinds")


def row_of(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    rows = body["active_apis"] + body["inactive_services"]
    return next((row for row in rows if row["service_name"] == name), None)


async def wait_row(mesh: Mesh, name: str, check: Any, what: str) -> tuple[dict[str, Any], Any]:
    """The first 200 body whose row `name` passes `check`, and that row."""

    async def probe() -> tuple[dict[str, Any], Any] | None:
        body = await mesh.metrics()
        row = row_of(body, name)
        return (body, row) if row is not None and check(row) else None

    return await eventually(probe, what=what)


async def test_a_stopped_service_shows_its_last_figures_and_their_age_not_zeros(
    mesh: Mesh,
) -> None:
    tracker = mesh.tracker(STOPPED)
    for index in range(40):
        tracker.observe("data_fetch", 0.02 + index / 1000, error=index % 4 == 0)
    body, live = await wait_row(
        mesh, STOPPED, lambda row: row["total_events"] == 40, "40 events of weather-api"
    )
    assert live["status"] == "active" and live["seconds_since_seen"] == 0
    assert live["last_seen"] is not None
    await mesh.agents[STOPPED].stop(0)

    body, down = await wait_row(
        mesh,
        STOPPED,
        lambda row: row["status"] == "inactive" and row["seconds_since_seen"] > 3 * ROUND_SECONDS,
        "weather-api inactive for a few rounds",
    )
    RealTimeMetrics.model_validate(body)
    assert down in body["inactive_services"] and down not in body["active_apis"]
    # Its last figures, not zeros, with when they arrived and how old they are.
    assert down["total_events"] == 40 and down["window_events"] == 40
    assert down["total_errors"] == 10 and down["error_rate"] == 0.25
    assert down["events_per_second"] > 0 and down["latency_p99_ms"] > 20
    assert [kind["kind"] for kind in down["kinds"]] == ["data_fetch"]
    assert down["last_seen"] >= live["last_seen"]
    assert down["error_message"]
    # Totals, sources and services_answered count the active rows only.
    active = body["active_apis"]
    assert body["total_events"] == sum(row["total_events"] for row in active)
    assert body["events_per_second"] == pytest.approx(
        sum(row["events_per_second"] for row in active), abs=1e-3
    )
    assert "weather" not in body["data_sources_active"]
    assert body["services_answered"] == len(active) == 14

    # Rounds later the figures are as they were (old news, never decayed); only the age grows.
    _, later = await wait_row(
        mesh,
        STOPPED,
        lambda row: row["seconds_since_seen"] > down["seconds_since_seen"] + 2 * ROUND_SECONDS,
        "the age of weather-api's figures to grow",
    )
    assert {key: later[key] for key in KEPT} == {key: down[key] for key in KEPT}
    assert later["last_seen"] == down["last_seen"]


async def test_prometheus_leaves_a_down_service_absent_not_zero_nor_stale(mesh: Mesh) -> None:
    mesh.tracker(STOPPED).observe("data_fetch", 0.01)
    await wait_row(mesh, STOPPED, lambda row: row["total_events"] == 1, "weather-api counted")
    await mesh.agents[STOPPED].stop(0)
    _, down = await wait_row(
        mesh, STOPPED, lambda row: row["status"] == "inactive", "weather-api inactive"
    )
    assert down["total_events"] == 1  # the REST row keeps it ...

    async def scrape() -> dict[str, dict[str, float]]:
        text = (await mesh.http.get("/metrics")).text
        found: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                service = sample.labels.get("service")
                if service is not None:
                    found.setdefault(sample.name, {})[service] = sample.value
        return found

    async def down_in_scrape() -> dict[str, dict[str, float]] | None:
        found = await scrape()
        return found if found["metricsmesh_service_up"].get(STOPPED) == 0 else None

    found = await eventually(down_in_scrape, what="metricsmesh_service_up 0 for weather-api")
    # ... the exposition does not: no rate, counter, uptime, CPU or latency series for it.
    for name, by_service in found.items():
        if name in ("metricsmesh_service_up", "metricsmesh_service_call_latency_seconds"):
            continue
        assert STOPPED not in by_service, name
    assert len(found["metricsmesh_service_events_per_second"]) == 14


async def test_a_service_this_aggregator_never_reached_has_null_figures(mesh: Mesh) -> None:
    await mesh.agents[STOPPED].stop(0)

    async def gone() -> bool:  # unreachable, not just NOT_SERVING while it shuts down
        row = row_of((await mesh.metrics()), STOPPED)
        return row is not None and "UNAVAILABLE" in (row["error_message"] or "")

    await eventually(gone, what="weather-api unreachable")
    await mesh.stop_aggregator()
    restarted = datetime.now(UTC)
    await mesh.start_aggregator()  # a new lifetime: it has never heard from weather-api

    async def fresh_lifetime() -> tuple[dict[str, Any], dict[str, Any]] | None:
        response = await mesh.http.get("/api/v1/real-time-metrics")
        if response.status_code != 200:
            return None
        body = response.json()
        if datetime.fromisoformat(body["timestamp"]) < restarted:
            return None  # the last snapshot of the aggregator's previous lifetime
        row = row_of(body, STOPPED)
        return (body, row) if row is not None and row["status"] == "inactive" else None

    body, row = await eventually(fresh_lifetime, what="weather-api inactive after the restart")
    RealTimeMetrics.model_validate(body)
    for key in (*FIGURES, "uptime_seconds", "last_seen", "seconds_since_seen", "error_rate"):
        assert row[key] is None, key
    assert row["kinds"] == [] and row["status"] == "inactive"


# --- alert rules see unknown figures, not stale ones -------------------------------------------

REGISTRY = Registry(DEFAULT_REGISTRY[:2])
A, B = REGISTRY.names
BACKOFF = Backoff(1.0, 30.0)
T0 = 1_700_000_000.0


def times(sequence: int) -> RoundTimes:
    started = 100.0 + sequence
    return RoundTimes(sequence, T0 + sequence, started, started + 0.1)


def answer(
    name: str, window: int, errors: int, at: float, health: Health = Health.SERVING
) -> Outcome:
    """An agent's answer as the fan-out parses it (the serialized answer included)."""
    response = event_rate_pb2.GetEventRateResponse(
        service_name=name,
        events_per_second=window / 60,
        events_per_hour=window * 60,
        total_events=window,
        window_events=window,
        window_errors=errors,
        total_errors=errors,
    )
    figures = parse_figures(response.SerializeToString())
    return Outcome(CallResult.OK, health, 0.01, figures, received_at=at)


DEAD = Outcome(CallResult.UNREACHABLE, Health.UNREACHABLE, 0.001, error="UNAVAILABLE: gone")
ERRORS = check_rule(
    Rule("errors", "HighErrorRate", "error_rate", ">", 0.05, for_seconds=0.0, severity="high")
)
BUSY = check_rule(
    Rule("busy", "Busy", "events_per_second", ">", 0.05, for_seconds=0.0, severity="info")
)
DOWN = check_rule(
    Rule("down", "ServiceDown", "status", "!=", "active", for_seconds=0.0, severity="critical")
)


def test_alert_rules_treat_the_figures_of_a_row_that_is_not_active_as_unknown() -> None:
    # Round 1: A and B fail 10 % of their events: the error rule fires for both.
    healthy = {A: answer(A, 100, 10, 101.05), B: answer(B, 100, 10, 101.05)}
    first, states = fold_round(REGISTRY, healthy, {}, times(1), BACKOFF)
    alerts, _ = evaluate([ERRORS, DOWN], snapshot_to_proto(first, first.rows), {}, T0 + 1)
    assert {key: alert.state for key, alert in alerts.items()} == {
        "errors/" + A: State.FIRING,
        "errors/" + B: State.FIRING,
    }

    # Round 2: A is unreachable (its row keeps round 1's figures: 10 % errors, 1.7/s); B
    # answers without errors but NOT_SERVING (its row shows those fresh figures, inactive).
    later = {A: DEAD, B: answer(B, 6, 0, 102.05, Health.NOT_SERVING)}
    second, _ = fold_round(REGISTRY, later, states, times(2), BACKOFF)
    wire = snapshot_to_proto(second, second.rows)
    assert [row.status for row in wire.services] == [snapshot_pb2.SERVICE_STATUS_INACTIVE] * 2
    assert (wire.services[0].window_errors, wire.services[1].window_errors) == (10, 0)
    after, changes = evaluate([ERRORS, BUSY, DOWN], wire, alerts, T0 + 2)
    # Figures of rows that are not active are unknown: A's alert is not refreshed, B's does
    # not resolve on its 0 %, the rates (> 0.05/s) fire nothing; only the status rule speaks.
    assert after["errors/" + A] is alerts["errors/" + A]
    assert after["errors/" + B] is alerts["errors/" + B]
    assert not any(key.startswith("busy/") for key in after)
    assert {(c.alert.rule_id, c.alert.service_name, c.alert.state) for c in changes} == {
        ("down", A, State.FIRING),
        ("down", B, State.FIRING),
    }
