"""The alert engine with a fake clock: for, keep_firing_for, hysteresis, no data, flapping,
selectors, services leaving, manual resolves, persistence across a restart."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metricsmesh.v1 import event_rate_pb2, snapshot_pb2

from aggregator._alerts.engine import (
    RESOLVED_RETENTION,
    Alert,
    State,
    alert_id,
    annotations_of,
    evaluate,
    resolve_by_hand,
    step,
)
from aggregator._alerts.rules import Rule, check_rule, rule_from_table
from aggregator._alerts.store import AlertStore
from aggregator._errors import AlertStoreError, RuleError
from mesh_common.figures import KIND_FIGURES, ROW_FIGURES

ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
INACTIVE = snapshot_pb2.SERVICE_STATUS_INACTIVE
T0 = 1_700_000_000.0


def row(
    name: str,
    *,
    status: int = ACTIVE,
    events: int = 100,
    errors: int = 0,
    service_type: str = "core",
    kinds: Mapping[str, tuple[int, int]] | None = None,
) -> snapshot_pb2.ServiceRow:
    message = snapshot_pb2.ServiceRow(
        service_name=name,
        service_type=service_type,
        status=status,
        window_events=events if status == ACTIVE else 0,
        window_errors=errors if status == ACTIVE else 0,
        events_per_second=events / 60 if status == ACTIVE else 0,
    )
    for kind, (kind_events, kind_errors) in (kinds or {}).items():
        message.kinds.append(
            event_rate_pb2.EventKindRate(
                kind=kind, window_events=kind_events, window_errors=kind_errors
            )
        )
    return message


def snapshot(*rows: snapshot_pb2.ServiceRow) -> snapshot_pb2.Snapshot:
    return snapshot_pb2.Snapshot(services=list(rows))


ERRORS = check_rule(
    Rule(
        id="errors",
        name="HighErrorRate",
        figure="error_rate",
        comparator=">",
        threshold=0.05,
        for_seconds=30.0,
        severity="high",
        annotations={"summary": "{service} fails {value} of its events (> {threshold})"},
    )
)
DOWN = check_rule(
    Rule(
        id="down",
        name="ServiceDown",
        figure="status",
        comparator="!=",
        threshold="active",
        for_seconds=5.0,
        severity="critical",
    )
)


class Run:
    """Feeds snapshots to the engine one round at a time, a second apart by default."""

    def __init__(self, *rules: Rule) -> None:
        self.rules = list(rules)
        self.now = T0
        self.alerts: dict[str, Alert] = {}
        self.changes: list[tuple[str, State, State, float]] = []

    def round(self, *rows: snapshot_pb2.ServiceRow, seconds: float = 1.0) -> dict[str, Alert]:
        self.now += seconds
        self.alerts, changes = evaluate(self.rules, snapshot(*rows), self.alerts, self.now)
        self.changes += [(c.alert.id, c.previous, c.alert.state, c.time - T0) for c in changes]
        return self.alerts

    def state(self, alert_id: str) -> State:
        alert = self.alerts.get(alert_id)
        return State.INACTIVE if alert is None else alert.state


def test_pending_for_less_than_for_then_firing() -> None:
    run = Run(ERRORS)
    for _ in range(30):  # active at 1 s; at 30 s it has held for 29 s
        run.round(row("api", errors=10))
        assert run.state("errors/api") is State.PENDING
    run.round(row("api", errors=10))
    alert = run.alerts["errors/api"]
    assert alert.state is State.FIRING
    assert (alert.active_time - T0, alert.fired_time and alert.fired_time - T0) == (1.0, 31.0)
    assert alert.labels == {
        "alertname": "HighErrorRate",
        "service": "api",
        "type": "core",
        "severity": "high",
    }
    assert alert.annotations["summary"] == "api fails 0.1 of its events (> 0.05)"
    run.round(row("api", errors=0))
    assert run.state("errors/api") is State.RESOLVED
    assert [(old, new) for _, old, new, _ in run.changes] == [
        (State.INACTIVE, State.PENDING),
        (State.PENDING, State.FIRING),
        (State.FIRING, State.RESOLVED),
    ]


def test_a_pending_alert_whose_condition_clears_is_dropped_and_flapping_never_fires() -> None:
    run = Run(ERRORS)
    for index in range(120):  # the condition holds every other second: never 30 s in a row
        run.round(row("api", errors=10 if index % 2 else 0))
    assert all(new is not State.FIRING for _, _, new, _ in run.changes)
    assert {new for _, _, new, _ in run.changes} == {State.PENDING, State.INACTIVE}


def test_keep_firing_for_keeps_firing_after_the_condition_stops() -> None:
    rule = check_rule(
        Rule(**{**_fields(ERRORS), "for_seconds": 0.0, "keep_firing_for_seconds": 10.0})
    )
    run = Run(rule)
    run.round(row("api", errors=10))
    assert run.state("errors/api") is State.FIRING  # for 0: fires at once
    for _ in range(10):  # counted from the first round without the condition, at 2 s
        run.round(row("api", errors=0))
        assert run.state("errors/api") is State.FIRING
    run.round(row("api", errors=0))
    assert run.state("errors/api") is State.RESOLVED
    assert run.alerts["errors/api"].resolved_time == T0 + 12


def test_hysteresis_fires_above_5_percent_and_resolves_only_below_3() -> None:
    rule = check_rule(Rule(**{**_fields(ERRORS), "for_seconds": 0.0, "clear_threshold": 0.03}))
    run = Run(rule)
    run.round(row("api", errors=4))
    assert run.state("errors/api") is State.INACTIVE
    run.round(row("api", errors=6))
    assert run.state("errors/api") is State.FIRING
    run.round(row("api", errors=4))  # 4 %: no longer above 5 %, but not below 3 % either
    assert run.state("errors/api") is State.FIRING
    run.round(row("api", errors=3))
    assert run.state("errors/api") is State.RESOLVED


def test_no_data_neither_fires_nor_resolves_and_the_status_rule_covers_it() -> None:
    run = Run(ERRORS, DOWN)
    for _ in range(31):
        run.round(row("api", errors=10))
    assert run.state("errors/api") is State.FIRING
    for _ in range(60):  # a minute unreachable: its error rate is unknown, not 0
        run.round(row("api", status=INACTIVE))
    assert run.state("errors/api") is State.FIRING
    assert run.state("down/api") is State.FIRING
    pending = Run(ERRORS)
    for _ in range(10):
        pending.round(row("api", errors=10))
    for _ in range(60):
        pending.round(row("api", status=INACTIVE))
    assert pending.state("errors/api") is State.PENDING  # no data does not clear it either
    assert pending.alerts["errors/api"].active_time == T0 + 1


def test_a_window_without_events_is_no_data_for_the_error_rate() -> None:
    run = Run(ERRORS)
    for _ in range(31):
        run.round(row("api", errors=10))
    run.round(row("api", events=0))
    assert run.state("errors/api") is State.FIRING


def test_selectors_pick_services_by_name_and_type_and_kinds_get_an_alert_each() -> None:
    by_type = check_rule(
        Rule(**{**_fields(DOWN), "id": "data-down", "service_types": frozenset({"data"})})
    )
    on_kinds = check_rule(
        Rule(**{**_fields(ERRORS), "id": "kind", "kinds": ("fetch", "parse"), "for_seconds": 0.0})
    )
    run = Run(by_type, on_kinds)
    for _ in range(6):
        alerts = run.round(
            row("core-1", status=INACTIVE),
            row("data-1", status=INACTIVE, service_type="data"),
            row("data-2", service_type="data", kinds={"fetch": (10, 5), "parse": (10, 0)}),
        )
    assert {key for key, alert in alerts.items() if alert.state is State.FIRING} == {
        "data-down/data-1",
        "kind/data-2/fetch",
    }
    assert alerts["kind/data-2/fetch"].labels["kind"] == "fetch"
    assert "kind/data-2/parse" not in alerts


def test_an_alert_whose_service_leaves_the_registry_resolves() -> None:
    run = Run(DOWN)
    for _ in range(6):
        run.round(row("api", status=INACTIVE), row("db"))
    assert run.state("down/api") is State.FIRING
    run.round(row("db"))
    assert run.state("down/api") is State.RESOLVED


def test_resolved_alerts_are_kept_for_fifteen_minutes() -> None:
    run = Run(DOWN)
    for _ in range(6):
        run.round(row("api", status=INACTIVE))
    run.round(row("api"))
    assert run.state("down/api") is State.RESOLVED
    run.round(row("api"), seconds=RESOLVED_RETENTION - 2)
    assert run.state("down/api") is State.RESOLVED
    run.round(row("api"), seconds=2)
    assert "down/api" not in run.alerts


def test_a_manual_resolve_silences_until_the_condition_has_cleared_once() -> None:
    run = Run(DOWN)
    for _ in range(6):
        run.round(row("api", status=INACTIVE))
    run.alerts["down/api"] = resolve_by_hand(run.alerts["down/api"], "ops@example", run.now)
    for _ in range(20):  # still down: stays resolved, silenced
        run.round(row("api", status=INACTIVE))
    alert = run.alerts["down/api"]
    assert (alert.state, alert.resolved_by, alert.silenced) == (State.RESOLVED, "ops@example", True)
    run.round(row("api"))  # it clears once ...
    for _ in range(6):  # ... so the next outage fires again
        run.round(row("api", status=INACTIVE))
    assert run.state("down/api") is State.FIRING


def test_for_timers_and_firing_alerts_survive_a_restart(tmp_path: Path) -> None:
    run = Run(ERRORS)
    for _ in range(20):
        run.round(row("api", errors=10), row("db", errors=50))
    store = AlertStore(tmp_path / "alerts.sqlite3")
    store.save_alerts(run.alerts.values())
    store.close()
    restarted = Run(ERRORS)
    restarted.now = run.now
    reopened = AlertStore(tmp_path / "alerts.sqlite3")
    restarted.alerts = reopened.alerts()
    assert restarted.alerts == run.alerts
    for _ in range(11):  # 11 more seconds complete the 30 s of `for`: no timer restarted
        restarted.round(row("api", errors=10), row("db", errors=50))
    assert restarted.state("errors/api") is State.FIRING
    assert restarted.alerts["errors/api"].active_time == T0 + 1
    assert [new for _, _, new, _ in restarted.changes] == [State.FIRING, State.FIRING]


def test_closing_the_store_during_a_save_waits_for_it_and_refuses_later_calls(
    tmp_path: Path,
) -> None:
    """A shutdown while the alert observer saves (from its worker thread) once crashed sqlite."""
    run = Run(ERRORS)
    run.round(row("api", errors=10))
    (alert,) = run.alerts.values()
    many = [replace(alert, id=f"errors/svc-{i}", service_name=f"svc-{i}") for i in range(10_000)]
    store = AlertStore(tmp_path / "alerts.sqlite3")
    saving = threading.Thread(target=store.save_alerts, args=(many,))
    saving.start()
    while not store._lock.locked() and saving.is_alive():
        pass  # until the save holds the connection
    store.close()  # waits for the save instead of freeing the connection under it
    saving.join()
    with pytest.raises(AlertStoreError, match="is closed"):
        store.alerts()
    assert len(AlertStore(tmp_path / "alerts.sqlite3").alerts()) == 10_000  # saved whole


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"name": "x", "figure": "cpu", "comparator": ">", "threshold": 1}, "figure"),
        ({"name": "x", "figure": "error_rate", "comparator": "=>", "threshold": 1}, "comparator"),
        ({"name": "x", "figure": "error_rate", "comparator": ">", "threshold": "a"}, "threshold"),
        ({"name": "", "figure": "error_rate", "comparator": ">", "threshold": 1}, "name"),
        (
            {
                "name": "x",
                "figure": "error_rate",
                "comparator": ">",
                "threshold": 1,
                "severity": "meh",
            },
            "severity",
        ),
        (
            {
                "name": "x",
                "figure": "error_rate",
                "comparator": ">",
                "threshold": 0.05,
                "clear_threshold": 0.1,
            },
            "clear_threshold",
        ),
        ({"name": "x", "figure": "status", "comparator": ">", "threshold": "active"}, "comparator"),
        (
            {"name": "x", "figure": "error_rate", "comparator": ">", "threshold": 1, "colour": 1},
            "colour",
        ),
        (
            {
                "name": "x",
                "figure": "error_rate",
                "comparator": ">",
                "threshold": 1,
                "for_seconds": -5,
            },
            "for_seconds",
        ),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(table: dict[str, object], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        rule_from_table(0, table)
    assert caught.value.field == field
    assert f"rule field {field!r}" in str(caught.value)


def _fields(rule: Rule) -> dict[str, object]:
    return {name: getattr(rule, name) for name in Rule.__dataclass_fields__}


def test_percent_placeholders_show_a_ratio_as_prometheus_humanize_percentage_does() -> None:
    rule = check_rule(
        replace(
            ERRORS,
            annotations={"summary": "{service} fails {value_percent} (> {threshold_percent})"},
        )
    )
    assert annotations_of(rule, "api", "", 0.07858)["summary"] == "api fails 7.86% (> 5%)"
    assert annotations_of(DOWN, "api", "", "unreachable")["summary"].startswith("ServiceDown: api")


def plain_evaluate(
    rules: list[Rule], message: snapshot_pb2.Snapshot, previous: Mapping[str, Alert], now: float
) -> tuple[dict[str, Alert], list[tuple[str, State, State]]]:
    """The engine's semantics written as the plain loop: every rule, row and kind, stepped."""
    row_figures = {figure.name: figure for figure in ROW_FIGURES}
    kind_figures = {figure.name: figure for figure in KIND_FIGURES}
    alerts: dict[str, Alert] = {}
    changes: list[tuple[str, State, State]] = []
    seen: set[str] = set()

    def record(key: str, before: Alert | None, after: Alert | None) -> None:
        old = State.INACTIVE if before is None else before.state
        new = State.INACTIVE if after is None else after.state
        if old is not new:
            changes.append((key, old, new))

    def number(value: object) -> float | str | None:
        return value if value is None or isinstance(value, str) else float(value)  # type: ignore[arg-type]

    for rule in rules:
        for wire in message.services:
            if not rule.selects(wire.service_name, wire.service_type):
                continue
            active = wire.status == ACTIVE
            if rule.kinds:
                kinds = {k.kind: k for k in wire.kinds} if active else {}
                values = [
                    (kind, None if kind not in kinds else number(
                        kind_figures[rule.figure].read(kinds[kind])
                    ))
                    for kind in rule.kinds
                ]  # fmt: skip
            else:
                known = active or rule.figure == "status"
                values = [("", number(row_figures[rule.figure].read(wire)) if known else None)]
            for kind, value in values:
                key = alert_id(rule.id, wire.service_name, kind)
                seen.add(key)
                before = previous.get(key)
                after = step(rule, before, value, wire, kind, now)
                if after is not None:
                    alerts[key] = after
                record(key, before, after)
    for key, before in previous.items():
        if key in seen:
            continue
        # Its service left, or its rule is gone: a firing alert resolves, a pending one drops.
        after: Alert | None = before
        if before.state is State.PENDING:
            after = None
        elif before.state is State.FIRING:
            after = replace(before, state=State.RESOLVED, resolved_time=now)
        elif not before.silenced and now - (before.resolved_time or now) >= RESOLVED_RETENTION:
            after = None
        if after is not None:
            alerts[key] = after
        record(key, before, after)
    return alerts, changes


SERVICES = [("api", "core"), ("db", "core"), ("feed", "data"), ("meter", "data")]
RULES = [
    DOWN,
    check_rule(replace(ERRORS, for_seconds=2.0, clear_threshold=0.03)),
    check_rule(replace(ERRORS, id="feeds", service_types=frozenset({"data"}), for_seconds=0.0)),
    check_rule(replace(DOWN, id="db", service_names=frozenset({"db"}), for_seconds=0.0)),
    check_rule(replace(ERRORS, id="kinds", kinds=("fetch", "parse"), keep_firing_for_seconds=2.0)),
    check_rule(replace(ERRORS, id="one-kind", kinds=("parse",), comparator="<", threshold=0.5)),
]

wire_rows = st.lists(
    st.tuples(
        st.sampled_from(SERVICES),
        st.sampled_from([ACTIVE, ACTIVE, INACTIVE]),
        st.integers(0, 20),
        st.dictionaries(
            st.sampled_from(["fetch", "parse", "other"]),
            st.tuples(st.integers(0, 20), st.integers(0, 20)),
            max_size=3,
        ),
    ),
    max_size=4,
    unique_by=lambda item: item[0][0],
)


@settings(max_examples=150, deadline=None)
@given(rounds=st.lists(st.tuples(wire_rows, st.sampled_from([1.0, 3.0, 600.0])), max_size=8))
def test_the_engine_steps_exactly_the_instances_the_plain_loop_does(
    rounds: list[tuple[list[tuple[tuple[str, str], int, int, dict[str, tuple[int, int]]]], float]],
) -> None:
    now = T0
    alerts: dict[str, Alert] = {}
    plain: dict[str, Alert] = {}
    for rows_of_round, seconds in rounds:
        now += seconds
        message = snapshot(
            *(
                row(name, service_type=kind, status=status, events=20, errors=errors, kinds={
                    each: (events, min(events, errors)) for each, (events, errors) in kinds.items()
                })
                for (name, kind), status, errors, kinds in rows_of_round
            )
        )  # fmt: skip
        alerts, changes = evaluate(RULES, message, alerts, now)
        plain, plain_changes = plain_evaluate(RULES, message, plain, now)
        assert alerts == plain
        assert list(alerts) == list(plain)  # rule, then registry, then kind order
        assert [(c.alert.id, c.previous, c.alert.state) for c in changes] == plain_changes
