"""The pure round fold: outcomes and times in, one snapshot out; no I/O, no clock."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import pytest
from metricsmesh.v1 import aggregator_pb2

from agent import EventTracker
from agent._convert import reading_to_response
from aggregator import Registry, ServiceEntry
from aggregator._convert import Projection, RenderCache, WholeSnapshots, snapshot_to_proto
from aggregator._fanout import parse_figures
from aggregator._fold import Backoff, RoundTimes, fold_round, status_changes, without_buckets
from aggregator._model import (
    AgentFigures,
    CallResult,
    Health,
    Outcome,
    SnapshotData,
    TargetState,
)
from mesh_common import latency
from mesh_common.figures import TOTAL_FIGURES, fleet_values
from mesh_common.status import ServiceStatus
from tests.clocks import FakeClock

REGISTRY = Registry(
    (
        ServiceEntry("a", "127.0.0.1", 8001, 18001, "core"),
        ServiceEntry("w", "127.0.0.1", 8009, 18009, "data", "weather"),
        ServiceEntry("c", "127.0.0.1", 8010, 18010, "data", "carbon"),
    )
)
ACTIVE, INACTIVE, ERROR = ServiceStatus
BACKOFF = Backoff(base=1.0, maximum=30.0)
TIMES = RoundTimes(sequence=7, take_time=1_700_000_000.0, started=100.0, finished=100.25)


def figures(name: str, eps: float = 2.0, total: int = 500, window: int = 120) -> AgentFigures:
    return AgentFigures(name, eps, eps * 3600, total, window, 60.0)


def ok(name: str, health: Health = Health.SERVING, **changes: float) -> Outcome:
    return Outcome(CallResult.OK, health, 0.01, figures(name, **changes), received_at=100.1)  # type: ignore[arg-type]


def fold(
    *outcomes: Outcome, states: Mapping[str, TargetState] | None = None
) -> tuple[SnapshotData, dict[str, TargetState]]:
    """Fold one outcome per registry entry, in registry order (states by name, default none)."""
    by_name = dict(zip(REGISTRY.names, outcomes, strict=True))
    return fold_round(REGISTRY, by_name, states or {}, TIMES, BACKOFF)


def test_totals_and_data_sources_cover_active_rows_only() -> None:
    snapshot, _ = fold(
        ok("a", eps=1.5, total=10, window=5),
        ok("w", eps=2.0, total=20, window=5),
        ok("c", Health.NOT_SERVING, eps=4.0, total=40, window=5),
    )
    assert [row.status for row in snapshot.rows] == [
        ServiceStatus.ACTIVE,
        ServiceStatus.ACTIVE,
        ServiceStatus.INACTIVE,
    ]
    assert snapshot.events_per_second == 3.5
    assert snapshot.events_per_hour == 3.5 * 3600
    assert snapshot.total_events == 30
    assert snapshot.data_sources_active == ("weather",)
    assert (snapshot.services_answered, snapshot.services_total) == (3, 3)
    assert (snapshot.sequence, snapshot.take_time, snapshot.round_duration) == (
        7,
        1_700_000_000.0,
        0.25,
    )
    assert snapshot.rows[2].error_message == "health: NOT_SERVING"
    # It answered with good figures: the row shows them (fresh), the totals leave them out.
    assert snapshot.rows[2].figures is not None
    assert snapshot.rows[2].figures.events_per_second == 4.0
    assert snapshot.rows[2].seen_age == 0.0


def answered(
    name: str, work: Callable[[EventTracker], object], health: Health = Health.SERVING
) -> Outcome:
    """The outcome of a call to a real agent's tracker once `work` has counted on it."""
    clock = FakeClock()
    tracker = EventTracker(name, clock=clock)
    work(tracker)
    clock.tick(30.0)
    answer = reading_to_response(tracker.read()).SerializeToString()
    return Outcome(CallResult.OK, health, 0.01, parse_figures(answer), received_at=100.1)


def as_json(values: dict[str, object]) -> dict[str, object]:
    return {figure.name: figure.to_json(values[figure.name]) for figure in TOTAL_FIGURES}


def test_a_filter_keeping_every_service_totals_exactly_as_the_round_does() -> None:
    # A core service with a data source, and timed events: the two rules once disagreed.
    registry = Registry(
        (
            ServiceEntry("a", "127.0.0.1", 8001, 18001, "core", "ledger"),
            ServiceEntry("w", "127.0.0.1", 8009, 18009, "data", "weather"),
            ServiceEntry("c", "127.0.0.1", 8010, 18010, "data", "carbon"),
        )
    )
    outcomes = {
        "a": answered("a", lambda tracker: tracker.record("api_call", 90)),
        "w": answered("w", lambda tracker: [tracker.observe("fetch", 0.02 * n) for n in (1, 2, 3)]),
        "c": answered("c", lambda tracker: tracker.record_error("fetch", 4), Health.NOT_SERVING),
    }
    snapshot, _ = fold_round(registry, outcomes, {}, TIMES, BACKOFF)
    message = snapshot_to_proto(snapshot, snapshot.rows)
    plain = as_json(fleet_values(message))
    filtered = as_json(fleet_values(message, list(message.services)))
    assert filtered == plain  # as a client reads them (the summary's Durations are in ns)
    assert plain["data_sources_active"] == ["weather"]  # of active data services only
    assert (plain["active_count"], plain["inactive_apis"]) == (2, 1)
    assert plain["events_per_second"] == pytest.approx(93 / 30)  # a's and w's, not c's
    assert plain["error_rate"] == 0.0
    assert plain["latency_p99_ms"] == pytest.approx(60.0, rel=latency.RELATIVE_ERROR)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"eps": -1.0}, "events_per_second is -1.0"),
        ({"eps": math.nan}, "events_per_second is nan"),
        ({"total": 3, "window": 9}, "total_events 3 is less than window_events 9"),
        ({"window": 0}, "with no event in the window"),
    ],
)
def test_nonsense_figures_make_an_error_row(changes: dict[str, float], expected: str) -> None:
    snapshot, states = fold(ok("a", **changes), ok("w"), ok("c"))
    row = snapshot.rows[0]
    assert row.status is ServiceStatus.ERROR
    assert expected in row.error_message
    assert snapshot.error_count == 1 and snapshot.total_events == 1000
    assert states["a"].consecutive_failures == 0  # it answered: no backoff


def test_wrong_agent_at_an_address_is_an_error() -> None:
    snapshot, _ = fold(ok("w"), ok("w"), ok("c"))
    assert snapshot.rows[0].status is ServiceStatus.ERROR
    assert "reports service_name 'w'" in snapshot.rows[0].error_message


def test_repeated_transport_failures_back_off_exponentially() -> None:
    dead = Outcome(CallResult.UNREACHABLE, Health.UNREACHABLE, 0.001, error="UNAVAILABLE: down")
    state = TargetState()
    retry_delays = []
    for _ in range(8):
        _, states = fold(dead, ok("w"), ok("c"), states={"a": state})
        state = states["a"]
        retry_delays.append(state.retry_at - TIMES.finished if state.retry_at else 0.0)
    assert retry_delays == [0.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert state.consecutive_failures == 8 and state.last_error == "UNAVAILABLE: down"


def test_a_skipped_agent_stays_listed_inactive_with_its_last_error() -> None:
    previous = TargetState(consecutive_failures=3, last_error="DEADLINE_EXCEEDED", retry_at=200)
    skipped = Outcome(CallResult.SKIPPED, Health.SERVING, 0.0, error="not called: backing off")
    snapshot, states = fold(skipped, ok("w"), ok("c"), states={"a": previous})
    row = snapshot.rows[0]
    assert (row.status, row.consecutive_failures) == (ServiceStatus.INACTIVE, 3)
    assert row.error_message == "not called: backing off"
    assert states["a"] == previous
    assert snapshot.services_answered == 2


def test_an_answer_resets_the_failure_count() -> None:
    previous = TargetState(consecutive_failures=5, last_error="x", retry_at=90)
    snapshot, states = fold(ok("a"), ok("w"), ok("c"), states={"a": previous})
    assert states["a"] == TargetState(last_seen=states["a"].last_seen)
    assert states["a"].last_seen is not None
    assert snapshot.rows[0].consecutive_failures == 0


def test_error_status_answers_are_error_rows_without_backoff() -> None:
    failing = Outcome(CallResult.ERROR, Health.SERVING, 0.002, error="INTERNAL: boom")
    snapshot, states = fold(failing, ok("w"), ok("c"))
    assert snapshot.rows[0].status is ServiceStatus.ERROR
    assert states["a"].consecutive_failures == 1 and states["a"].retry_at == 0.0


def test_rows_follow_the_registry_whatever_the_order_of_the_outcomes() -> None:
    outcomes = {"c": ok("c", total=3, window=3), "a": ok("a", total=1, window=1)}
    outcomes["w"] = ok("w", total=2, window=2)
    snapshot, states = fold_round(REGISTRY, outcomes, {}, TIMES, BACKOFF)
    assert [row.entry.name for row in snapshot.rows] == ["a", "w", "c"]
    assert [row.figures.total_events for row in snapshot.rows if row.figures] == [1, 2, 3]
    assert list(states) == ["a", "w", "c"]


def test_a_service_without_an_outcome_is_an_error_row_and_counts_a_failure() -> None:
    previous = {"w": TargetState(consecutive_failures=2, last_error="x")}
    snapshot, states = fold_round(REGISTRY, {"a": ok("a")}, previous, TIMES, BACKOFF)
    assert [row.status for row in snapshot.rows] == [
        ServiceStatus.ACTIVE,
        ServiceStatus.ERROR,
        ServiceStatus.ERROR,
    ]
    assert snapshot.rows[1].error_message == "no outcome was collected"
    assert (states["w"].consecutive_failures, states["c"].consecutive_failures) == (3, 1)
    assert snapshot.services_total == 3 and snapshot.services_answered == 1


def test_outcomes_and_states_of_services_not_in_the_registry_are_ignored() -> None:
    stray = {"gone": TargetState(consecutive_failures=9)}
    outcomes = {"a": ok("a"), "w": ok("w"), "c": ok("c"), "gone": ok("gone")}
    snapshot, states = fold_round(REGISTRY, outcomes, stray, TIMES, BACKOFF)
    assert [row.entry.name for row in snapshot.rows] == ["a", "w", "c"]
    assert "gone" not in states
    assert snapshot.total_events == 1500


def test_the_snapshot_is_timed_by_the_round() -> None:
    snapshot, _ = fold(ok("a"), ok("w"), ok("c"))
    assert snapshot.taken_at == TIMES.started
    assert snapshot.round_duration == TIMES.finished - TIMES.started
    assert [row.received_at for row in snapshot.rows] == [100.1, 100.1, 100.1]


# --- last known figures of services that are not active ---------------------------------------

DEAD = Outcome(CallResult.UNREACHABLE, Health.UNREACHABLE, 0.001, error="UNAVAILABLE: down")
LATER = RoundTimes(sequence=8, take_time=1_700_000_005.0, started=105.0, finished=105.25)


def test_a_stopped_service_keeps_its_last_figures_with_their_age_but_out_of_totals() -> None:
    _, states = fold(ok("a", eps=1.5, total=10, window=5), ok("w"), ok("c"))
    by_name = {"a": DEAD, "w": ok("w", total=20, window=5), "c": ok("c", total=30, window=5)}
    snapshot, later_states = fold_round(REGISTRY, by_name, states, LATER, BACKOFF)
    row = snapshot.rows[0]
    assert row.status is ServiceStatus.INACTIVE
    assert row.figures is not None
    assert (row.figures.events_per_second, row.figures.total_events) == (1.5, 10)  # as they were
    assert row.received_at == 100.1
    assert row.seen_time == pytest.approx(1_700_000_000.1)
    assert row.seen_age == pytest.approx(4.9)  # at the round's start: 105.0 - 100.1
    assert (snapshot.total_events, snapshot.events_per_second) == (50, 4.0)  # w and c only
    assert snapshot.services_answered == 2 and snapshot.active_count == 2
    assert later_states["a"].last_seen == states["a"].last_seen  # kept across failures


def test_a_service_that_never_answered_has_no_figures_and_no_age() -> None:
    snapshot, states = fold(DEAD, ok("w"), ok("c"))
    row = snapshot.rows[0]
    assert (row.figures, row.received_at, row.seen_time, row.seen_age) == (None,) * 4
    assert states["a"].last_seen is None


def test_nonsense_figures_do_not_replace_the_last_good_ones() -> None:
    _, states = fold(ok("a", total=10, window=5), ok("w"), ok("c"))
    by_name = {"a": ok("a", eps=-1.0), "w": ok("w"), "c": ok("c")}
    snapshot, later = fold_round(REGISTRY, by_name, states, LATER, BACKOFF)
    assert snapshot.rows[0].status is ServiceStatus.ERROR
    assert snapshot.rows[0].figures is not None and snapshot.rows[0].figures.total_events == 10
    assert later["a"].last_seen == states["a"].last_seen


def test_kept_figures_hold_no_parsed_latency_buckets() -> None:
    from mesh_common.latency import Histogram

    histogram = Histogram(offset=0, counts=(1,), sum_seconds=0.01, max_seconds=0.01)
    timed = Outcome(
        CallResult.OK,
        Health.SERVING,
        0.01,
        AgentFigures("a", 2.0, 7200.0, 500, 120, 60.0, latency=histogram),
        received_at=100.1,
    )
    snapshot, states = fold(timed, ok("w"), ok("c"))
    assert snapshot.latency is not None and snapshot.latency.count == 1  # merged this round
    assert states["a"].last_seen is not None and states["a"].last_seen.figures.latency is None


def test_status_changes_name_each_service_once_from_unknown_then_on_change() -> None:
    first, states = fold(ok("a"), DEAD, ok("c"))
    changes = status_changes(None, first)
    assert [(c.service_name, c.previous, c.status) for c in changes] == [
        ("a", "unknown", ServiceStatus.ACTIVE),
        ("w", "unknown", ServiceStatus.INACTIVE),
        ("c", "unknown", ServiceStatus.ACTIVE),
    ]
    assert changes[1].reason == "UNAVAILABLE: down" and changes[0].reason == "answered"
    same, states = fold_round(
        REGISTRY, {"a": ok("a"), "w": DEAD, "c": ok("c")}, states, LATER, BACKOFF
    )
    assert status_changes(first, same) == []  # still down: nothing new to say
    back, _ = fold_round(REGISTRY, {"a": DEAD, "w": ok("w"), "c": ok("c")}, states, LATER, BACKOFF)
    assert [(c.service_name, c.previous, c.status.value) for c in status_changes(same, back)] == [
        ("a", "active", "inactive"),
        ("w", "inactive", "active"),
    ]


def test_a_rounds_wire_rows_are_built_once_for_the_stream_and_the_alerts() -> None:
    snapshot, _ = fold(ok("a"), ok("w", eps=5.0), ok("c"))
    whole = WholeSnapshots()
    cache = RenderCache(whole=whole)
    sent = aggregator_pb2.StreamSnapshotsResponse.FromString(
        Projection(REGISTRY, aggregator_pb2.SnapshotFilter()).render(
            snapshot, 101.0, cache, "stream"
        )
    )
    shared = whole.get(snapshot)  # what the alert observer evaluates
    assert whole.get(snapshot) is shared  # built once per round
    assert [row.service_name for row in shared.services] == ["a", "w", "c"]
    assert sent.snapshot.services[0].age.ToNanoseconds() == 900_000_000  # set when sent
    for row in sent.snapshot.services:
        row.ClearField("age")
    assert sent.snapshot.services == shared.services  # the stream sends those very rows
    assert sent.snapshot.events_per_second == shared.events_per_second == 9.0
    assert sent.snapshot.age.ToNanoseconds() == 1_000_000_000  # the sent copy has its age
    assert not shared.HasField("age")  # the shared message is left as built
    filtered = Projection(REGISTRY, aggregator_pb2.SnapshotFilter(service_names=["w"]))
    only_w = aggregator_pb2.StreamSnapshotsResponse.FromString(
        filtered.render(snapshot, 101.0, cache, "stream")
    )
    assert [row.service_name for row in only_w.snapshot.services] == ["w"]


def test_kept_figures_lose_only_their_buckets() -> None:
    """A row's kept figures (shown while it is down) are the answer's, every field but buckets."""
    figures = AgentFigures(
        "svc", 2.0, 7200.0, 40, 30, 12.5, 3, 4, latency.merge([]), answer=b"answer bytes"
    )
    kept = without_buckets(figures)
    assert kept == dataclasses.replace(figures, latency=None)
    assert [field.name for field in dataclasses.fields(AgentFigures)] == [
        "service_name", "events_per_second", "events_per_hour", "total_events", "window_events",
        "uptime_seconds", "window_errors", "total_errors", "latency", "answer",
    ]  # fmt: skip
