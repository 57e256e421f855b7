"""A service of several instances: its instances' figures folded into one row's, exactly.

`fold_figures` adds what counts (rates, events and errors in the window and since start, CPU)
and merges latency buckets index by index (`mesh_common.latency.merge`), for the service and
per kind, so every quantile of the row is the quantile of the merged buckets, never an average
of percentiles. Uptime and start time are the longest-running instance's, the last event and
the reading the latest. The result is an `AgentFigures` like one agent's, with a GetEventRate
answer of its own (`answer`), so the wire row and the totals read it as they read any row.
`instances_error` names the instances that are not active and why; `row_health` is the
health a row of several instances shows. Folding 3 instances' answers costs a few times
converting one row (bench/bench_instances.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from operator import attrgetter

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from metricsmesh.v1 import event_rate_pb2

from aggregator._model import AgentFigures, Health, InstanceData
from mesh_common import latency
from mesh_common.status import ServiceStatus
from mesh_common.wire_time import to_seconds

MAX_NAMED_INSTANCES = 5
"""How many failing instances a row's error text names (the others are counted)."""

_Answer = event_rate_pb2.GetEventRateResponse
# Sort keys read at C speed, not by a lambda per item (bench/bench_instances.py, `fold`).
_INSTANT = attrgetter("seconds", "nanos")
_UPTIME = attrgetter("uptime.seconds", "uptime.nanos")


def fold_figures(name: str, figures: Sequence[AgentFigures]) -> AgentFigures:
    """The figures of service `name` from those of its active instances (at least one).

    One instance's figures are the service's as they are; several are folded into a new
    answer (each instance's answer is parsed once).
    """
    if len(figures) == 1:
        return figures[0]
    answers = [_Answer.FromString(each.answer) for each in figures]
    folded = _Answer(
        service_name=name,
        events_per_second=math.fsum([answer.events_per_second for answer in answers]),
        events_per_hour=math.fsum([answer.events_per_hour for answer in answers]),
        total_events=sum([answer.total_events for answer in answers]),
        window_events=sum([answer.window_events for answer in answers]),
        window_errors=sum([answer.window_errors for answer in answers]),
        total_errors=sum([answer.total_errors for answer in answers]),
        cpu_usage_percent=math.fsum([answer.cpu_usage_percent for answer in answers]),
    )
    longest = max(answers, key=_UPTIME)
    for field in ("uptime", "start_time", "window", "covered_span"):
        if longest.HasField(field):
            getattr(folded, field).CopyFrom(getattr(longest, field))
    _latest(folded.read_time, answers, "read_time")
    _latest(folded.last_event_time, answers, "last_event_time")
    window = latency.merge(each.latency for each in figures if each.latency is not None)
    if window.counts:
        latency.summarize(window, folded.latency)
    _fold_kinds(folded.kinds, answers)
    return AgentFigures(
        service_name=name,
        events_per_second=folded.events_per_second,
        events_per_hour=folded.events_per_hour,
        total_events=folded.total_events,
        window_events=folded.window_events,
        uptime_seconds=to_seconds(folded.uptime),
        window_errors=folded.window_errors,
        total_errors=folded.total_errors,
        latency=window if window.counts else None,
        answer=folded.SerializeToString(),
    )


def _fold_kinds(
    target: RepeatedCompositeFieldContainer[event_rate_pb2.EventKindRate],
    answers: Sequence[_Answer],
) -> None:
    """Each kind of any instance once, sorted by name: counts added, window buckets merged.

    Without `latency_since_start`: summed over the instances that answered, it would be no
    cumulative histogram (it goes down when one stops), and no reader of a row of several
    instances needs it (history and /metrics read each instance's own).
    """
    by_kind: dict[str, list[event_rate_pb2.EventKindRate]] = {}
    for answer in answers:
        for kind in answer.kinds:
            by_kind.setdefault(kind.kind, []).append(kind)
    add = target.add
    for name in sorted(by_kind):
        parts = by_kind[name]
        # Lists, not generators: a kind of 3 instances folds in about 10 % less time
        # (bench/bench_instances.py, `fold`).
        item = add(
            kind=name,
            events_per_second=math.fsum([part.events_per_second for part in parts]),
            total_events=sum([part.total_events for part in parts]),
            window_events=sum([part.window_events for part in parts]),
            window_errors=sum([part.window_errors for part in parts]),
            total_errors=sum([part.total_errors for part in parts]),
        )
        _latest(item.last_event_time, parts, "last_event_time")
        window = latency.merge_proto(
            [part.latency.histogram for part in parts if part.HasField("latency")]
        )
        if window.counts:
            latency.summarize(window, item.latency)


def _latest(target: Timestamp, owners: Iterable[Message], field: str) -> None:
    """Set `target` to the latest Timestamp `field` of `owners` (left unset if none has it)."""
    present: list[Timestamp] = [getattr(owner, field) for owner in owners if owner.HasField(field)]
    if present:
        target.CopyFrom(max(present, key=_INSTANT))


def instances_error(instances: Sequence[InstanceData]) -> str:
    """`2 of 3 instances not active: 10.0.0.6:18009: UNAVAILABLE: ...; ...`, or "" if all are.

    The first MAX_NAMED_INSTANCES failing instances are named with their error, the others
    counted.
    """
    down = [instance for instance in instances if instance.status is not ServiceStatus.ACTIVE]
    if not down:
        return ""
    named = [
        f"{instance.address}: {instance.error_message or instance.status.value}"
        for instance in down[:MAX_NAMED_INSTANCES]
    ]
    if len(down) > MAX_NAMED_INSTANCES:
        named.append(f"and {len(down) - MAX_NAMED_INSTANCES} more")
    return f"{len(down)} of {len(instances)} instances not active: " + "; ".join(named)


def row_health(instances: Sequence[InstanceData]) -> Health:
    """SERVING when an instance is, else the first instance's health."""
    if any(instance.health is Health.SERVING for instance in instances):
        return Health.SERVING
    return instances[0].health if instances else Health.UNKNOWN
