"""The orders `top` can show its rows in, each chosen with one key: rate, errors, p99, name.

Active services always come before the others (their figures are live), except in name
order; within each group the figure decides, biggest first, then the name. A row without
the figure (no event in the window, no timed event) comes after the rows that have it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from metricsmesh.v1 import snapshot_pb2

from mesh_common.figures import row_figure


@dataclass(frozen=True, slots=True)
class RowOrder:
    """One way of ordering rows: the key that picks it, its name in the footer, its sort key."""

    key: str
    label: str
    """The footer's word for it (`rate`, `errors`, `p99`, `name`)."""
    sort_key: Callable[[snapshot_pb2.ServiceRow], Any]
    descending: bool = True
    """True when the biggest value comes first (the footer shows ▼, else ▲)."""

    def apply(self, rows: Iterable[snapshot_pb2.ServiceRow]) -> list[snapshot_pb2.ServiceRow]:
        """`rows` in this order."""
        return sorted(rows, key=self.sort_key)


def _inactive(row: snapshot_pb2.ServiceRow) -> bool:
    return row.status != snapshot_pb2.SERVICE_STATUS_ACTIVE


def _biggest_first(figure_name: str) -> Callable[[snapshot_pb2.ServiceRow], Any]:
    figure = row_figure(figure_name)

    def sort_key(row: snapshot_pb2.ServiceRow) -> Any:
        value = figure.read(row)
        return (_inactive(row), value is None, -(value or 0.0), row.service_name)

    return sort_key


ORDERS: dict[str, RowOrder] = {
    order.key: order
    for order in (
        RowOrder("r", "rate", _biggest_first("events_per_second")),
        RowOrder("e", "errors", _biggest_first("error_rate")),
        RowOrder("l", "p99", _biggest_first("latency_p99_ms")),
        RowOrder("n", "name", lambda row: row.service_name, descending=False),
    )
}
"""Every order by its key, in the footer's order; `r` (rate) is where `top` starts."""
BY_RATE = ORDERS["r"]
"""The default order: busiest active service first."""
