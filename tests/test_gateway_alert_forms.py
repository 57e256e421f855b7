"""The REST forms of an alert rule (native, seed 003, seed 004) mapped onto AlertRule."""

from __future__ import annotations

from typing import Any

import pytest
from metricsmesh.v1 import alerts_pb2

from gateway._alert_forms import parse_condition, parse_seconds, rule_from_form
from gateway._errors import AlertFormError, GatewayError
from mesh_common.alert_json import rule_json
from mesh_common.wire_time import to_seconds

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


def test_seed_003_payload_as_it_is() -> None:
    rule = rule_from_form(SEED_003)
    assert rule.name == "High CPU Alert"
    assert rule.figure == "cpu_usage_percent"  # unknown to the mesh: the aggregator refuses it
    assert (rule.comparator, rule.threshold) == (">", 80.0)
    assert rule.severity == "high"
    assert to_seconds(rule.for_duration) == 300.0
    assert dict(rule.annotations) == {"description": "CPU usage is above 80% for 5 minutes"}
    assert not rule.HasField("clear_threshold")


@pytest.mark.parametrize(
    ("metric_name", "figure"),
    [
        ("avg_response_time", "latency_avg_ms"),
        ("error_rate", "error_rate"),
        ("throughput_tps", "events_per_second"),
        ("latency_p99_ms", "latency_p99_ms"),
    ],
)
def test_seed_figure_names_map_onto_the_row_schema(metric_name: str, figure: str) -> None:
    assert rule_from_form({**SEED_003, "metric_name": metric_name}).figure == figure


def test_seed_003_condition_without_a_number_takes_the_threshold() -> None:
    rule = rule_from_form(
        {"name": "a", "metric_name": "error_rate", "condition": ">=", "threshold": 0.1}
    )
    assert (rule.figure, rule.comparator, rule.threshold) == ("error_rate", ">=", 0.1)


@pytest.mark.parametrize(
    ("condition", "figure", "comparator", "threshold"),
    [
        ("error_rate > 0.05", "error_rate", ">", 0.05),
        ("avg_response_time > 2000", "latency_avg_ms", ">", 2000.0),
        ("throughput_tps<1", "events_per_second", "<", 1.0),
        ("  latency_p95_ms   >=   500 ", "latency_p95_ms", ">=", 500.0),
    ],
)
def test_seed_004_conditions(
    condition: str, figure: str, comparator: str, threshold: float
) -> None:
    rule = rule_from_form(
        {"name": "x", "condition": condition, "severity": "warning", "notification": "email,slack"}
    )
    assert (rule.figure, rule.comparator, rule.threshold) == (figure, comparator, threshold)
    assert rule.labels["notification"] == "email,slack"


def test_a_status_condition_compares_text() -> None:
    rule = rule_from_form({"name": "down", "condition": "status != active", "for_duration": "5s"})
    assert (rule.figure, rule.comparator, rule.threshold_text) == ("status", "!=", "active")
    assert to_seconds(rule.for_duration) == 5.0


def test_the_native_form_is_what_the_rules_list_returns() -> None:
    native: dict[str, Any] = {
        "name": "HighErrorRate",
        "figure": "error_rate",
        "comparator": ">",
        "threshold": 0.05,
        "clear_threshold": 0.03,
        "for_seconds": 30,
        "keep_firing_for_seconds": 60,
        "severity": "critical",
        "service_names": ["admin-api"],
        "service_types": ["core"],
        "kinds": ["api_call"],
        "labels": {"team": "core"},
        "annotations": {"summary": "{service} fails {value}"},
    }
    rule = rule_from_form(native)
    assert rule.clear_threshold == 0.03
    assert to_seconds(rule.keep_firing_for) == 60.0
    listed = rule_json(rule)
    for key, value in native.items():
        assert listed[key] == value, key
    # What the list returns can be posted again (less id and source).
    again = {key: value for key, value in listed.items() if key not in ("id", "source")}
    assert rule_from_form(again) == rule


def test_a_status_threshold_may_be_given_as_text() -> None:
    rule = rule_from_form(
        {"name": "d", "figure": "status", "comparator": "==", "threshold": "inactive"}
    )
    assert rule.threshold_text == "inactive" and rule.threshold == 0.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(300, 300.0), ("90", 90.0), ("30s", 30.0), ("5m", 300.0), ("1.5h", 5400.0), ("250ms", 0.25)],
)
def test_durations(text: float | str, seconds: float) -> None:
    assert parse_seconds(text, "for_duration") == seconds


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ([1, 2], "body", "JSON object"),
        ({"name": "x", "threshold": 1}, "figure", "missing"),
        ({"name": "x", "figure": "error_rate", "threshold": [1]}, "threshold", "valid"),
        ({"name": "x", "figure": "error_rate", "bogus": 1}, "bogus", "Extra inputs"),
        (
            {"name": "x", "metric_name": "error_rate", "condition": "> 80", "threshold": 90},
            "threshold",
            "give one",
        ),
        (
            {"name": "x", "figure": "error_rate", "condition": "latency_p99_ms > 5"},
            "figure",
            "give one",
        ),
        (
            {"name": "x", "figure": "error_rate", "comparator": "<", "condition": "> 1"},
            "comparator",
            "give one",
        ),
        (
            {"name": "x", "metric_name": "error_rate", "condition": "about 80"},
            "condition",
            "not a condition",
        ),
        ({"name": "x", "condition": "error_rate > 1e999"}, "condition", "finite"),
        ({"name": "x", "condition": "error_rate > (1)"}, "condition", "neither a number"),
        (
            {"name": "x", "condition": "error_rate > 1", "for_duration": "soon"},
            "for_duration",
            "not a duration",
        ),
        ({"name": "x", "condition": "error_rate > 1", "for_duration": -5}, "for_duration", ">= 0"),
        (
            {"name": "x", "condition": "error_rate > 1", "evaluation_interval": "often"},
            "evaluation_interval",
            "duration",
        ),
        ({"name": "x", "condition": "error_rate > 1", "labels": {"a": 1}}, "labels.a", "string"),
        ({"name": "x" * 5000, "condition": "error_rate > 1"}, "name", "at most"),
        (
            {"name": "x", "condition": "error_rate > 1", "keep_firing_for_seconds": -1},
            "keep_firing_for_seconds",
            ">= 0",
        ),
    ],
)
def test_a_malformed_body_names_the_field(body: Any, field: str, words: str) -> None:
    with pytest.raises(AlertFormError) as caught:
        rule_from_form(body)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, GatewayError)


def test_conditions_parse_into_figure_comparator_and_value() -> None:
    assert parse_condition("> 80") == (None, ">", 80.0)
    assert parse_condition("error_rate!=0") == ("error_rate", "!=", 0.0)
    assert parse_condition("status == 'inactive'") == ("status", "==", "inactive")
    assert parse_condition("<=") == (None, "<=", None)


def test_an_empty_rule_is_left_to_the_aggregator_to_refuse() -> None:
    rule = rule_from_form({"figure": "error_rate"})
    assert rule == alerts_pb2.AlertRule(figure="error_rate")
