"""The aggregator's values: what a round learned, as frozen dataclasses (no protobuf).

A round produces one `Outcome` per agent (what its GetEventRate call did and the agent's
health): one per service of one agent, one per instance of a service of several, each under
its `TargetKey`; `fold_round` turns them into a `SnapshotData`. Conversion to the wire
`Snapshot` happens at the edge (`aggregator._convert`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aggregator._ingest.model import PushedSeries
from mesh_common.latency import Histogram
from mesh_common.registry import ServiceEntry
from mesh_common.status import ServiceStatus

TargetKey = str | tuple[str, str]
"""Whose outcome and state: a service of one agent's name (as it always was), or (name,
address) for one instance of a service of several instances. A service of several keeps
its row's own state (its last folded figures) under its name."""


def target_key(entry: ServiceEntry, address: str) -> TargetKey:
    """The key of the agent at `address` of `entry` (see `TargetKey`)."""
    return (entry.name, address) if entry.instances else entry.name


class Health(enum.Enum):
    """The agent's last known grpc.health.v1 status, as the aggregator saw it."""

    UNKNOWN = "unknown"
    """No health information has arrived yet."""
    SERVING = "serving"
    NOT_SERVING = "not_serving"
    SERVICE_UNKNOWN = "service_unknown"
    UNREACHABLE = "unreachable"


class CallResult(enum.Enum):
    """How a GetEventRate call ended."""

    OK = "ok"
    """The agent answered with figures."""
    UNREACHABLE = "unreachable"
    """The agent could not be reached (connection refused, UNAVAILABLE, cancelled)."""
    DEADLINE = "deadline"
    """The call did not finish within its deadline."""
    ERROR = "error"
    """The agent answered with an error status (UNKNOWN, INTERNAL, UNIMPLEMENTED, ...)."""
    SKIPPED = "skipped"
    """The call was not made: the agent is backing off after repeated failures."""
    STALE = "stale"
    """A pushed service sent nothing within its staleness window (no call is made)."""


@dataclass(frozen=True, slots=True)
class AgentFigures:
    """The figures of one GetEventRate answer that the round's verdict and totals use."""

    service_name: str
    events_per_second: float
    events_per_hour: float
    total_events: int
    window_events: int
    uptime_seconds: float
    window_errors: int = 0
    total_errors: int = 0
    latency: Histogram | None = None
    """The window's latency buckets (merged into the fleet's); None without timed events."""
    answer: bytes = b""
    """The serialized GetEventRate answer, for what only the wire snapshot shows (times,
    per-kind breakdown). Kept as bytes (about 200 per row) rather than as a parsed message
    (about 1.5 KB) because the history ring holds many of them; parsed again at the edge."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one round's call to one agent produced."""

    result: CallResult
    health: Health
    latency: float | None
    """Seconds from the call's start until it ended (the deadline when it timed out); None
    when no call was made (skipped while backing off, or the round failed): no data, not 0."""
    figures: AgentFigures | None = None
    error: str = ""
    """The error text: gRPC status code and details, or why the call was skipped."""
    received_at: float = 0.0
    """Monotonic instant at which the answer arrived (0 when there is none)."""


_last_epoch = 0


def new_epoch(wall: float) -> int:
    """A new aggregator lifetime's identity: its start in wall-clock milliseconds.

    Strictly greater than any epoch handed out before in this process, so two lifetimes
    started within one millisecond (or under a fake clock) still differ.
    """
    global _last_epoch
    _last_epoch = max(_last_epoch + 1, int(wall * 1000.0), 1)
    return _last_epoch


def failed_outcome(error: str) -> Outcome:
    """The outcome of a service whose call could not even be made (the round itself failed)."""
    return Outcome(CallResult.ERROR, Health.UNKNOWN, None, error=error)


@dataclass(frozen=True, slots=True)
class LastSeen:
    """A service's last good figures (an answer that made sense) and when they arrived."""

    figures: AgentFigures
    """As the agent sent them, without their parsed latency buckets (the answer holds them)."""
    received_at: float
    """Monotonic instant at which they arrived."""
    wall_time: float
    """The same instant as wall-clock time (epoch seconds), for `last_seen_time`."""


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the loop remembers about one service between rounds (for backoff and rows)."""

    consecutive_failures: int = 0
    last_error: str = ""
    retry_at: float = 0.0
    """Monotonic instant before which no call is made (backoff); 0 means call every round."""
    last_seen: LastSeen | None = None
    """The last good figures, shown in the row while the service is not active; None until
    the agent first answered with figures that made sense."""


@dataclass(frozen=True, slots=True)
class InstanceData:
    """One instance's part of the row of a service of several instances.

    Its own verdict and figures, read as a row's are: this round's when active, else the
    last good ones.
    """

    address: str
    status: ServiceStatus
    health: Health
    error_message: str
    call_latency: float | None
    consecutive_failures: int
    figures: AgentFigures | None
    received_at: float | None
    seen_time: float | None
    seen_age: float | None


@dataclass(frozen=True, slots=True)
class RowData:
    """One service's line in a snapshot."""

    entry: ServiceEntry
    status: ServiceStatus
    health: Health
    error_message: str
    call_latency: float | None
    """How long this round's call took; None when no call was made."""
    consecutive_failures: int
    figures: AgentFigures | None
    """This round's figures when the row is active; otherwise the last known ones, as they
    were (never decayed, never counted in totals); None when the agent never answered."""
    received_at: float | None
    """Monotonic instant at which the figures arrived (None without figures)."""
    seen_time: float | None = None
    """Wall-clock time (epoch seconds) at which the figures arrived (None without figures)."""
    seen_age: float | None = None
    """How old the figures were at the snapshot's start, in seconds (0 for this round's
    answer; None without figures)."""
    instances: tuple[InstanceData, ...] = ()
    """Each instance of a service of several instances, in registry order; empty for a
    service of one agent (and a pushed one)."""

    @property
    def instances_total(self) -> int:
        """How many instances the service has (1 for a service of one agent)."""
        return len(self.instances) or 1

    @property
    def instances_up(self) -> int:
        """How many of them are active this round."""
        if not self.instances:
            return 1 if self.status is ServiceStatus.ACTIVE else 0
        return sum(1 for instance in self.instances if instance.status is ServiceStatus.ACTIVE)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A service's status differs from the previous snapshot's (or it had none before)."""

    service_name: str
    previous: str
    """The status word before: active, inactive, error, or unknown (no earlier row)."""
    status: ServiceStatus
    reason: str
    """Why: the row's error text, or `answered` when it became active."""


@dataclass(frozen=True, slots=True)
class SnapshotData:
    """One consolidated round: rows in registry order plus totals over the active rows.

    Each row carries its own registry entry, so a snapshot in history stays meaningful after
    the registry changes.
    """

    sequence: int
    take_time: float
    """Wall-clock time (epoch seconds) at which the round started."""
    taken_at: float
    """Monotonic instant at which the round started (for ages)."""
    round_duration: float
    rows: tuple[RowData, ...]
    services_answered: int
    active_count: int
    inactive_count: int
    error_count: int
    events_per_second: float
    events_per_hour: float
    total_events: int
    data_sources_active: tuple[str, ...]
    window_events: int = 0
    """Events in the windows of the active services."""
    window_errors: int = 0
    """Failed events among them."""
    latency: Histogram | None = None
    """The merged latency buckets of the active services' windows; None without any."""
    epoch: int = 0
    """The aggregator lifetime that took it (`new_epoch()`); (epoch, sequence) names it."""
    pushed: tuple[PushedSeries, ...] = ()
    """The pushed series whose value changed since the previous snapshot (all of them)."""
    pushed_omitted: int = 0
    """How many of them the wire snapshot leaves out (past `max_pushed_per_snapshot`): the
    streams get the first ones, history all."""

    @property
    def services_total(self) -> int:
        """The number of configured services (the n of k-of-n)."""
        return len(self.rows)
