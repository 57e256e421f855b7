"""The fleet totals: one rule for the figures summed over a set of service rows.

The aggregator's round totals its rows with `fleet_totals`, and every filtered view (REST,
SSE, WebSocket, CLI) totals the rows it keeps with the same function, so a filter that keeps
every service answers exactly what the plain body does. Only active rows count: a row that
is not active shows its last known figures but adds nothing (DESIGN.md, Semantics). Sums and
counts add; latency is the merge of the active rows' buckets (percentiles are never averaged);
`data_sources_active` lists the data sources of the active `data` services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mesh_common.latency import Histogram, merge

DATA_SERVICE_TYPE = "data"
"""The service type whose data source counts in `data_sources_active`."""


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one row brings to the totals: whether it is active, and its figures if so."""

    active: bool
    service_type: str
    data_source: str = ""
    events_per_second: float = 0.0
    events_per_hour: float = 0.0
    total_events: int = 0
    window_events: int = 0
    window_errors: int = 0
    latency: Histogram | None = None
    """The row's window buckets; None when it timed no event (or they are not wanted)."""


@dataclass(frozen=True, slots=True)
class FleetTotals:
    """The totals of some rows: sums over the active ones, and how many there are."""

    services: int
    """Every row totalled, active or not."""
    active_count: int
    events_per_second: float
    events_per_hour: float
    total_events: int
    window_events: int
    window_errors: int
    data_sources_active: tuple[str, ...]
    """Sorted, each once."""
    latency: Histogram | None
    """The merged buckets of the active rows' windows; None when none timed an event."""

    @property
    def not_active_count(self) -> int:
        """Rows that are inactive or in error (the story's `inactive_apis`)."""
        return self.services - self.active_count

    @property
    def error_rate(self) -> float | None:
        """window_errors / window_events over the active rows; None without events."""
        return self.window_errors / self.window_events if self.window_events else None


def fleet_totals(rows: Iterable[Contribution]) -> FleetTotals:
    """The totals of `rows` (DESIGN.md: totals count active rows only)."""
    services = active = total = window_events = window_errors = 0
    eps = eph = 0.0
    sources: set[str] = set()
    latencies: list[Histogram] = []
    for row in rows:
        services += 1
        if not row.active:
            continue
        active += 1
        eps += row.events_per_second
        eph += row.events_per_hour
        total += row.total_events
        window_events += row.window_events
        window_errors += row.window_errors
        if row.latency is not None:
            latencies.append(row.latency)
        if row.service_type == DATA_SERVICE_TYPE and row.data_source:
            sources.add(row.data_source)
    return FleetTotals(
        services=services,
        active_count=active,
        events_per_second=eps,
        events_per_hour=eph,
        total_events=total,
        window_events=window_events,
        window_errors=window_errors,
        data_sources_active=tuple(sorted(sources)),
        latency=merge(latencies) if latencies else None,
    )
