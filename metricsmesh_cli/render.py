"""Snapshots as rich tables: the `snapshot` command's output and each frame of `top`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from metricsmesh.v1 import snapshot_pb2
from rich.console import Group
from rich.table import Table
from rich.text import Text

from mesh_common import thresholds
from mesh_common.figures import INSTANCE_FIGURES, Figure, columns, fleet_values
from mesh_common.status import ServiceStatus, from_wire
from mesh_common.wire_time import to_seconds
from metricsmesh_cli.sorting import RowOrder

DETAIL_WIDTH = 60
"""Longest kinds/error text in one-line mode (a wide terminal then shows one line per row)."""

INSTANCE_FIGURE_NAMES = frozenset(figure.name for figure in INSTANCE_FIGURES)
"""The columns an instance's line fills (the others stay empty)."""

STATUS_STYLES: dict[ServiceStatus, str] = {
    ServiceStatus.ACTIVE: "bold green",
    ServiceStatus.INACTIVE: "bold yellow",
    ServiceStatus.ERROR: "bold red",
}


def status_text(status: int) -> Text:
    """The status word of a wire status in its colour: active green, inactive yellow, error red."""
    word = from_wire(status)
    return Text(word.value, style=STATUS_STYLES[word])


def format_rate(value: float) -> str:
    """Events per second with a sensible number of digits."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`, `3d04h`."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _last_event(row: snapshot_pb2.ServiceRow, now: float) -> str:
    if not row.HasField("last_event_time"):
        return "-"
    when = to_seconds(row.last_event_time)
    return f"{format_duration(now - when)} ago"


def _kinds(row: snapshot_pb2.ServiceRow | snapshot_pb2.InstanceRow) -> str:
    kinds = sorted(row.kinds, key=lambda kind: (-kind.events_per_second, kind.kind))
    return ", ".join(
        f"{kind.kind} {format_rate(kind.events_per_second)}" for kind in kinds if kind.total_events
    )


def snapshot_title(snapshot: snapshot_pb2.Snapshot) -> str:
    """One line saying which snapshot this is and how fresh it is."""
    taken = datetime.fromtimestamp(to_seconds(snapshot.take_time), tz=UTC)
    round_ms = to_seconds(snapshot.round_duration) * 1000
    return (
        f"snapshot #{snapshot.sequence}  taken {taken:%H:%M:%S}Z  "
        f"age {to_seconds(snapshot.age):.1f}s  round {round_ms:.0f} ms"
    )


def snapshot_summary(snapshot: snapshot_pb2.Snapshot) -> Text:
    """Counts per status, the rate, error rate and p99, the active data sources.

    They speak for the rows shown: a filtered snapshot (fewer rows than services configured)
    gets its rows' totals, as the REST body of a filter does, not the whole fleet's.
    """
    rows = snapshot.services
    filtered = len(rows) < snapshot.services_total
    figures = fleet_values(snapshot, rows if filtered else None)
    statuses = Counter(from_wire(row.status) for row in rows)
    text = Text()
    for status in ServiceStatus:
        if status is not ServiceStatus.ACTIVE:
            text.append("  ")
        text.append(f"{statuses[status]} {status.value}", style=STATUS_STYLES[status].split()[-1])
    text.append(
        f"  of {len(rows)}" + (f" shown ({snapshot.services_total} configured)" if filtered else "")
    )
    text.append("   ")
    text.append(f"{format_rate(figures['events_per_second'])} ev/s", style="bold")
    text.append(f"  {figures['events_per_hour']:,.0f} ev/h  total {figures['total_events']:,}")
    rate = figures["error_rate"]
    if rate is not None:
        text.append("  errors ")
        text.append(f"{rate:.1%}", style=_level_style("error_rate", rate))
    p99 = figures["latency_p99_ms"]
    if p99 is not None:
        text.append("  p99 ")
        text.append(format_millis(p99), style=_level_style("latency_p99_ms", p99))
    if figures["data_sources_active"]:
        text.append(f"   data sources: {', '.join(figures['data_sources_active'])}")
    return text


def _cells(figure: Figure, row: snapshot_pb2.ServiceRow, now: float, one_line: bool) -> Text | str:
    """One cell: the figure's raw value of the row, formatted for its unit."""
    active = row.status == snapshot_pb2.SERVICE_STATUS_ACTIVE
    name = figure.name
    if name == "status":
        word = status_text(row.status)
        if row.instances:  # a service of several instances: k of n
            word.append(f" {row.instances_up}/{row.instances_total}")
        return word
    if name == "service_type":
        return row.service_type + (f" ({row.data_source})" if row.data_source else "")
    if name == "error_message":
        text = _kinds(row) if active else _down_detail(row)
        if one_line and len(text) > DETAIL_WIDTH:
            text = text[: DETAIL_WIDTH - 1] + "…"
        return Text(text, style="dim" if active or not row.error_message else "red")
    describes_the_call = figure.series is not None and figure.series.when_inactive
    if active or describes_the_call or name == "service_name":
        return _formatted(figure, figure.read(row), now)
    if not row.HasField("last_seen_time"):
        return "-"  # never answered: no figures at all
    stale = _formatted(figure, figure.read(row), now)  # the last known figures, dimmed
    return Text(stale.plain if isinstance(stale, Text) else stale, style="dim")


def _instance_cell(
    figure: Figure, instance: snapshot_pb2.InstanceRow, now: float, one_line: bool
) -> Text | str:
    """One cell of an instance's line under its service's row (`top`'s `i`)."""
    name = figure.name
    if name == "service_name":
        return Text(f" └ {instance.address}", style="dim")
    if name == "status":
        return status_text(instance.status)
    if name not in INSTANCE_FIGURE_NAMES:
        return ""
    active = instance.status == snapshot_pb2.SERVICE_STATUS_ACTIVE
    if name == "error_message":
        text = _kinds(instance) if active else _down_detail(instance)
        if one_line and len(text) > DETAIL_WIDTH:
            text = text[: DETAIL_WIDTH - 1] + "…"
        return Text(text, style="dim" if active or not instance.error_message else "red")
    describes_the_call = figure.series is not None and figure.series.when_inactive
    if active or describes_the_call:
        return _formatted(figure, figure.read(instance), now)
    if not instance.HasField("last_seen_time"):
        return "-"
    stale = _formatted(figure, figure.read(instance), now)
    return Text(stale.plain if isinstance(stale, Text) else stale, style="dim")


def _down_detail(row: snapshot_pb2.ServiceRow | snapshot_pb2.InstanceRow) -> str:
    """Why a row is not active, and how old its (last known) figures are."""
    reason = row.error_message or "-"
    if not row.HasField("last_seen_time"):
        return reason
    return f"figures from {format_duration(to_seconds(row.last_seen_age))} ago · {reason}"


def _formatted(figure: Figure, value: object, now: float) -> Text | str:
    if value is None:
        return "-"
    unit = figure.unit
    if unit == "ratio":
        assert isinstance(value, float)
        return Text(f"{value:.1%}", style=_level_style(figure.name, value))
    if unit == "ms":
        assert isinstance(value, float)
        return Text(format_millis(value), style=_level_style(figure.name, value))
    if unit == "1/s":
        assert isinstance(value, float)
        return format_rate(value)
    if unit in ("1/h", "events"):
        assert isinstance(value, int | float)
        return f"{value:,.0f}"
    if unit == "s":
        assert isinstance(value, float)
        return format_duration(value)
    if unit == "time":
        assert isinstance(value, float)
        return f"{format_duration(now - value)} ago"
    return str(value)


LEVEL_STYLES = {"warn": "yellow", "bad": "bold red"}
"""How a figure over its warning level looks (the levels: `mesh_common.thresholds`)."""


def _level_style(name: str, value: float) -> str:
    return LEVEL_STYLES.get(thresholds.level(name, value), "")


def format_millis(value: float) -> str:
    """A duration in ms: `0.42 ms`, `12.3 ms`, `250 ms`, `2.50 s`."""
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


_HEADERS = {"error_message": "KINDS (ev/s) / ERROR"}
_RIGHT_ALIGNED = frozenset({"1/s", "1/h", "events", "s", "ms", "ratio", "time"})
_FLEXIBLE = "error_message"
"""The column that takes what width is left (it wraps, or is cut in one-line mode)."""
_FLEXIBLE_MIN_WIDTH = 16
_COLUMN_PADDING = 3
"""What rich adds to a column's text: one space each side and a separator."""


def fitted_columns(
    cells: list[list[Text | str]], figures: tuple[Figure, ...], width: int | None
) -> list[int]:
    """The positions of the columns to show in `width` characters (all when it is None).

    Columns are dropped by the schema's priority, least important first.
    """
    shown = list(range(len(figures)))
    if width is None:
        return shown

    def needed(position: int) -> int:
        figure = figures[position]
        header = _HEADERS.get(figure.name, figure.label.upper())
        if figure.name == _FLEXIBLE:
            return _FLEXIBLE_MIN_WIDTH + _COLUMN_PADDING
        longest = (
            max(
                (Text(cell).cell_len if isinstance(cell, str) else cell.cell_len)
                for cell in (row[position] for row in cells)
            )
            if cells
            else 0
        )
        return max(len(header), longest) + _COLUMN_PADDING

    by_priority = sorted(shown, key=lambda p: (figures[p].column or (0, 0))[1], reverse=True)
    while shown and sum(needed(p) for p in shown) + 1 > width and len(shown) > 1:
        shown.remove(by_priority.pop(0))
    return shown


def snapshot_table(
    snapshot: snapshot_pb2.Snapshot,
    *,
    rows: Iterable[snapshot_pb2.ServiceRow] | None = None,
    now: float | None = None,
    one_line: bool = False,
    width: int | None = None,
    instances: bool = False,
) -> tuple[Table, list[str]]:
    """The services of `snapshot` as a table (`rows` picks and orders them), and what it hid.

    The columns are the row schema's (`mesh_common.figures.columns()`). With a `width`, the
    least important columns are dropped until the table fits; their labels are returned so
    the caller can say so. `one_line` cuts long kinds/error texts (with an ellipsis), so that
    every row is one line and a table refreshed in place does not jump. With `instances`,
    each instance of a service of several gets a line of its own under the service's row.
    """
    now = time.time() if now is None else now
    figures = columns()
    chosen = list(snapshot.services if rows is None else rows)
    cells: list[list[Text | str]] = []
    for row in chosen:
        cells.append([_cells(figure, row, now, one_line) for figure in figures])
        if instances:
            cells.extend(
                [_instance_cell(figure, instance, now, one_line) for figure in figures]
                for instance in row.instances
            )
    shown = fitted_columns(cells, figures, width)
    table = Table(title=snapshot_title(snapshot), title_justify="left", expand=False)
    for position in shown:
        figure = figures[position]
        table.add_column(
            _HEADERS.get(figure.name, figure.label.upper()),
            justify="right" if figure.unit in _RIGHT_ALIGNED else "left",
            no_wrap=figure.name != _FLEXIBLE,
            overflow="ellipsis" if figure.name == _FLEXIBLE and one_line else "fold",
        )
    for row_cells in cells:
        table.add_row(*(row_cells[position] for position in shown))
    hidden = [figures[p].label for p in range(len(figures)) if p not in shown]
    return table, hidden


def snapshot_view(
    snapshot: snapshot_pb2.Snapshot,
    *,
    order: RowOrder | None = None,
    now: float | None = None,
    footer: str | Text = "",
    one_line: bool = False,
    width: int | None = None,
    instances: bool = False,
) -> Group:
    """The table plus its summary line (and an optional footer), ready to print or to `Live`.

    `order` sorts the rows (default: as the snapshot lists them). With a `width` (the
    terminal's), columns that do not fit are dropped and a line says which; in `one_line`
    mode that line is cut to one line rather than wrapped. `instances` adds each instance's
    line under its service's row.
    """
    rows = order.apply(snapshot.services) if order is not None else None
    table, hidden = snapshot_table(
        snapshot, rows=rows, now=now, one_line=one_line, width=width, instances=instances
    )
    parts: list[Table | Text] = [table, snapshot_summary(snapshot)]
    if hidden:
        note = f"{len(hidden)} columns hidden to fit {width} columns: {', '.join(hidden)}"
        parts.append(_line(note, one_line))
    if footer:
        parts.append(footer if isinstance(footer, Text) else _line(footer, one_line))
    return Group(*parts)


def _line(text: str, one_line: bool) -> Text:
    """A dim note; cut with an ellipsis at the width in `one_line` mode."""
    if one_line:
        return Text(text, style="dim", no_wrap=True, overflow="ellipsis")
    return Text(text, style="dim")
