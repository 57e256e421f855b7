"""The pure part of a round: per-service outcomes in, one frozen snapshot out.

Like OpenTelemetry's aggregation, `fold_round` has no I/O and no clock of its own: it gets the
outcomes, the previous per-service state and the times, and returns the snapshot and the next
state. Every rule of DESIGN.md's Semantics about statuses and totals lives here: a service
that is not active keeps its last good figures in its row (kept in its `TargetState`, with
when they arrived), and totals count active rows only. A service of several instances gets
one row: each instance is judged as a service of one agent is (its own verdict, state and
backoff), the row is active while one instance is, and its figures are the fold of the
active instances' (`aggregator._instances`). `status_changes` compares two snapshots'
statuses (the round loop logs them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aggregator._instances import fold_figures, instances_error, row_health
from aggregator._model import (
    AgentFigures,
    CallResult,
    Health,
    InstanceData,
    LastSeen,
    Outcome,
    RowData,
    SnapshotData,
    StatusChange,
    TargetKey,
    TargetState,
    failed_outcome,
)
from mesh_common.registry import ServiceEntry
from mesh_common.status import ServiceStatus
from mesh_common.totals import Contribution, fleet_totals

_TRANSPORT_FAILURES = frozenset({CallResult.UNREACHABLE, CallResult.DEADLINE, CallResult.STALE})


@dataclass(frozen=True, slots=True)
class RoundTimes:
    """When a round ran: its sequence number, start (wall and monotonic) and end."""

    sequence: int
    take_time: float
    started: float
    finished: float


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to leave an agent alone after consecutive transport failures.

    After the first failure the agent is called again next round; after the k-th (k >= 2),
    not before `base * 2 ** (k - 1)` seconds have passed, capped at `maximum`.
    """

    base: float
    maximum: float

    def delay(self, failures: int) -> float:
        """Seconds to wait before calling again after `failures` consecutive failures."""
        if failures < 2 or self.maximum <= 0:
            return 0.0
        return min(self.maximum, self.base * 2.0 ** min(failures - 1, 30))


def check_figures(expected_name: str, figures: AgentFigures) -> str:
    """Why `figures` make no sense (an error text), or "" when they are plausible."""
    eps = figures.events_per_second
    if not math.isfinite(eps) or eps < 0:
        return f"nonsense figures: events_per_second is {eps}"
    eph = figures.events_per_hour
    if not math.isfinite(eph) or eph < 0:
        return f"nonsense figures: events_per_hour is {eph}"
    if not math.isclose(eph, eps * 3600.0, rel_tol=1e-6, abs_tol=1e-6):
        return f"nonsense figures: events_per_hour {eph} is not events_per_second {eps} x 3600"
    if figures.total_events < figures.window_events:
        return (
            f"nonsense figures: total_events {figures.total_events} is less than "
            f"window_events {figures.window_events}"
        )
    if figures.window_errors > figures.window_events:
        return (
            f"nonsense figures: window_errors {figures.window_errors} is more than "
            f"window_events {figures.window_events}"
        )
    if figures.total_errors > figures.total_events:
        return (
            f"nonsense figures: total_errors {figures.total_errors} is more than "
            f"total_events {figures.total_events}"
        )
    if eps > 0 and figures.window_events == 0:
        return f"nonsense figures: events_per_second {eps} with no event in the window"
    if not math.isfinite(figures.uptime_seconds) or figures.uptime_seconds < 0:
        return f"nonsense figures: uptime is {figures.uptime_seconds} s"
    if figures.service_name and figures.service_name != expected_name:
        return (
            f"wrong agent: it reports service_name {figures.service_name!r}, the registry "
            f"expects {expected_name!r} at this address"
        )
    return ""


def judge(name: str, outcome: Outcome, state: TargetState) -> tuple[ServiceStatus, str]:
    """The status and error text of one row (DESIGN.md: active, inactive or error)."""
    if outcome.result is CallResult.SKIPPED:
        return ServiceStatus.INACTIVE, outcome.error or state.last_error
    if outcome.result in _TRANSPORT_FAILURES:
        return ServiceStatus.INACTIVE, outcome.error
    if outcome.result is CallResult.ERROR:
        return ServiceStatus.ERROR, outcome.error
    if outcome.figures is None:
        return ServiceStatus.ERROR, "the agent answered without figures"
    problem = check_figures(name, outcome.figures)
    if problem:
        return ServiceStatus.ERROR, problem
    if outcome.health is Health.SERVING:
        return ServiceStatus.ACTIVE, ""
    if outcome.health is Health.NOT_SERVING:
        return ServiceStatus.INACTIVE, "health: NOT_SERVING"
    if outcome.health is Health.UNREACHABLE:
        return ServiceStatus.INACTIVE, "health: the Watch stream to the agent failed"
    if outcome.health is Health.SERVICE_UNKNOWN:
        return ServiceStatus.INACTIVE, f"health: the agent does not know service {name!r}"
    return ServiceStatus.INACTIVE, "health: no status received within the deadline"


def next_state(outcome: Outcome, state: TargetState, now: float, backoff: Backoff) -> TargetState:
    """The per-service state after this round's outcome (the last good figures stay)."""
    if outcome.result is CallResult.SKIPPED:
        return state
    if outcome.result is CallResult.OK:
        return TargetState(last_seen=state.last_seen)
    failures = state.consecutive_failures + 1
    retry_at = 0.0
    if outcome.result in _TRANSPORT_FAILURES:
        delay = backoff.delay(failures)
        retry_at = now + delay if delay > 0 else 0.0
    return TargetState(failures, outcome.error, retry_at, state.last_seen)


def seen_now(outcome: Outcome, status: ServiceStatus, times: RoundTimes) -> LastSeen | None:
    """The service's last good figures as of this round, or None when it sent none.

    None means no figures that made sense (no answer, an error, nonsense figures). An
    answer with good figures counts even when the health says NOT_SERVING: they are the
    service's own, fresh figures (the row is inactive all the same). The figures are kept
    without their parsed latency buckets: the history ring holds many rows, and only this
    round's fold needs the buckets, to merge the fleet's.
    """
    figures = outcome.figures
    if outcome.result is not CallResult.OK or figures is None or status is ServiceStatus.ERROR:
        return None
    if figures.latency is not None:
        figures = without_buckets(figures)
    wall_time = times.take_time + (outcome.received_at - times.started)
    return LastSeen(figures, outcome.received_at, wall_time)


def without_buckets(figures: AgentFigures) -> AgentFigures:
    """`figures` without their parsed latency buckets (their answer still holds them).

    Built field by field: dataclasses.replace costs several times more, and a round calls
    this once per agent (bench/bench_instances.py, `fold`).
    """
    return AgentFigures(
        figures.service_name,
        figures.events_per_second,
        figures.events_per_hour,
        figures.total_events,
        figures.window_events,
        figures.uptime_seconds,
        figures.window_errors,
        figures.total_errors,
        None,
        figures.answer,
    )


def fold_row(
    entry: ServiceEntry,
    outcome: Outcome,
    verdict: tuple[ServiceStatus, str],
    new_state: TargetState,
    times: RoundTimes,
) -> RowData:
    """One service's row: its verdict, and its figures (this round's or the last known).

    A row that is not active shows the service's last good figures as they were, with when
    they arrived and how old they were at the round's start; totals never count them.
    """
    status, error = verdict
    seen = new_state.last_seen
    return RowData(
        entry=entry,
        status=status,
        health=outcome.health,
        error_message=error,
        call_latency=outcome.latency,
        consecutive_failures=new_state.consecutive_failures,
        figures=None if seen is None else seen.figures,
        received_at=None if seen is None else seen.received_at,
        seen_time=None if seen is None else seen.wall_time,
        seen_age=None if seen is None else max(0.0, times.started - seen.received_at),
    )


def fold_round(
    registry: Sequence[ServiceEntry],
    outcomes: Mapping[TargetKey, Outcome],
    states: Mapping[TargetKey, TargetState],
    times: RoundTimes,
    backoff: Backoff,
) -> tuple[SnapshotData, dict[TargetKey, TargetState]]:
    """Fold one round's outcomes (by `TargetKey`) into a snapshot and the next states.

    Rows follow the registry's order (pushed services after the polled ones). An agent with
    no outcome counts as failed, one with no state starts afresh. The totals are
    `mesh_common.totals.fleet_totals` of the rows (the rule every filtered view uses too):
    active rows only, the fleet's latency the merge of their buckets; `services_answered`
    counts the services whose GetEventRate call (one of their instances' calls) returned
    figures. The last known figures of rows that are not active are shown, never counted.
    """
    rows: list[RowData] = []
    parts: list[Contribution] = []
    new_states: dict[TargetKey, TargetState] = {}
    answered = 0
    for entry in registry:
        if entry.instances:
            row, figures, answers = fold_several(
                entry, outcomes, states, times, backoff, new_states
            )
        else:
            outcome = outcomes.get(entry.name) or failed_outcome("no outcome was collected")
            state = states.get(entry.name) or TargetState()
            answers = outcome.result is CallResult.OK and outcome.figures is not None
            row, new_states[entry.name] = fold_service(entry, outcome, state, times, backoff)
            figures = outcome.figures
        answered += answers
        rows.append(row)
        parts.append(contribution(row, figures))
    totals = fleet_totals(parts)
    statuses = Counter(row.status for row in rows)
    snapshot = SnapshotData(
        sequence=times.sequence,
        take_time=times.take_time,
        taken_at=times.started,
        round_duration=max(0.0, times.finished - times.started),
        rows=tuple(rows),
        services_answered=answered,
        active_count=totals.active_count,
        inactive_count=statuses[ServiceStatus.INACTIVE],
        error_count=statuses[ServiceStatus.ERROR],
        events_per_second=totals.events_per_second,
        events_per_hour=totals.events_per_hour,
        total_events=totals.total_events,
        data_sources_active=totals.data_sources_active,
        window_events=totals.window_events,
        window_errors=totals.window_errors,
        latency=totals.latency,
    )
    return snapshot, new_states


def fold_service(
    entry: ServiceEntry, outcome: Outcome, state: TargetState, times: RoundTimes, backoff: Backoff
) -> tuple[RowData, TargetState]:
    """One service's row of this round and its state for the next."""
    verdict = judge(entry.name, outcome, state)
    new_state = next_state(outcome, state, times.finished, backoff)
    fresh = seen_now(outcome, verdict[0], times)
    if fresh is not None:
        new_state = TargetState(
            new_state.consecutive_failures, new_state.last_error, new_state.retry_at, fresh
        )
    return fold_row(entry, outcome, verdict, new_state, times), new_state


def fold_several(
    entry: ServiceEntry,
    outcomes: Mapping[TargetKey, Outcome],
    states: Mapping[TargetKey, TargetState],
    times: RoundTimes,
    backoff: Backoff,
    new_states: dict[TargetKey, TargetState],
) -> tuple[RowData, AgentFigures | None, bool]:
    """The row of a service of several instances: (row, this round's figures, answered).

    Each instance is judged and backs off as a service of one agent does (its state in
    `new_states` under (name, address)). The row is active while at least one instance is;
    its figures fold the active instances' (None when none is: the row then shows the last
    folded figures, kept in `new_states` under the service's name); the error text names
    the instances that are not active, even while the row is.
    """
    instances: list[InstanceData] = []
    active: list[AgentFigures] = []
    received: list[float] = []
    answered = False
    for address in entry.instances:
        key = (entry.name, address)
        outcome = outcomes.get(key) or failed_outcome("no outcome was collected")
        state = states.get(key) or TargetState()
        row, new_states[key] = fold_service(entry, outcome, state, times, backoff)
        instances.append(_instance(address, row))
        answered = answered or (outcome.result is CallResult.OK and outcome.figures is not None)
        if row.status is ServiceStatus.ACTIVE and outcome.figures is not None:
            active.append(outcome.figures)
            received.append(outcome.received_at)
    folded = fold_figures(entry.name, active) if active else None
    seen = (states.get(entry.name) or TargetState()).last_seen
    if folded is not None:
        arrived = max(received)
        kept = without_buckets(folded)
        seen = LastSeen(kept, arrived, times.take_time + (arrived - times.started))
    new_states[entry.name] = TargetState(last_seen=seen)
    if folded is not None:
        status = ServiceStatus.ACTIVE
    elif any(instance.status is ServiceStatus.ERROR for instance in instances):
        status = ServiceStatus.ERROR
    else:
        status = ServiceStatus.INACTIVE
    latencies = [each.call_latency for each in instances if each.call_latency is not None]
    row = RowData(
        entry=entry,
        status=status,
        health=row_health(instances),
        error_message=instances_error(instances),
        call_latency=max(latencies) if latencies else None,
        consecutive_failures=min(instance.consecutive_failures for instance in instances),
        figures=None if seen is None else seen.figures,
        received_at=None if seen is None else seen.received_at,
        seen_time=None if seen is None else seen.wall_time,
        seen_age=None if seen is None else max(0.0, times.started - seen.received_at),
        instances=tuple(instances),
    )
    return row, folded, answered


def _instance(address: str, row: RowData) -> InstanceData:
    """An instance's part of its service's row, from the row it would have on its own."""
    return InstanceData(
        address,
        row.status,
        row.health,
        row.error_message,
        row.call_latency,
        row.consecutive_failures,
        row.figures,
        row.received_at,
        row.seen_time,
        row.seen_age,
    )


def contribution(row: RowData, figures: AgentFigures | None) -> Contribution:
    """What `row` adds to the totals: this round's `figures` (with their buckets) if active."""
    entry = row.entry
    if row.status is not ServiceStatus.ACTIVE or figures is None:
        return Contribution(False, entry.type, entry.data_source)
    return Contribution(
        True,
        entry.type,
        entry.data_source,
        figures.events_per_second,
        figures.events_per_hour,
        figures.total_events,
        figures.window_events,
        figures.window_errors,
        figures.latency,
    )


def status_changes(previous: SnapshotData | None, current: SnapshotData) -> list[StatusChange]:
    """The services whose status differs from `previous`, in registry order.

    With no previous snapshot every service changes from `unknown`; so does a service new
    to the registry.
    """
    before = {} if previous is None else {row.entry.name: row.status for row in previous.rows}
    changes = []
    for row in current.rows:
        old = before.get(row.entry.name)
        if old is row.status:
            continue
        reason = row.error_message if row.status is not ServiceStatus.ACTIVE else "answered"
        changes.append(
            StatusChange(
                row.entry.name,
                "unknown" if old is None else old.value,
                row.status,
                reason or row.status.value,
            )
        )
    return changes
