"""Snapshots as rich tables: the `snapshot` command's output and each frame of `top`."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from metricsmesh.v1 import snapshot_pb2
from rich.console import Group
from rich.table import Table
from rich.text import Text

from mesh_common.wire_time import to_seconds

DETAIL_WIDTH = 60
"""Longest kinds/error text in one-line mode (a wide terminal then shows one line per row)."""

STATUS_STYLES: dict[int, tuple[str, str]] = {
    snapshot_pb2.SERVICE_STATUS_ACTIVE: ("active", "bold green"),
    snapshot_pb2.SERVICE_STATUS_INACTIVE: ("inactive", "bold yellow"),
    snapshot_pb2.SERVICE_STATUS_ERROR: ("error", "bold red"),
}


def status_text(status: int) -> Text:
    """The status word in its colour: active green, inactive yellow, error red."""
    word, style = STATUS_STYLES.get(int(status), ("unknown", "dim"))
    return Text(word, style=style)


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


def _kinds(row: snapshot_pb2.ServiceRow) -> str:
    kinds = sorted(row.kinds, key=lambda kind: (-kind.events_per_second, kind.kind))
    return ", ".join(
        f"{kind.kind} {format_rate(kind.events_per_second)}" for kind in kinds if kind.total_events
    )


def sort_by_rate(
    rows: Iterable[snapshot_pb2.ServiceRow],
) -> list[snapshot_pb2.ServiceRow]:
    """Active rows first, busiest first; then the others by name (as `top` shows them)."""
    return sorted(
        rows,
        key=lambda row: (
            row.status != snapshot_pb2.SERVICE_STATUS_ACTIVE,
            -row.events_per_second,
            row.service_name,
        ),
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
    """Counts per status, the fleet's total rate and the active data sources."""
    text = Text()
    text.append(f"{snapshot.active_count} active", style="green")
    text.append("  ")
    text.append(f"{snapshot.inactive_count} inactive", style="yellow")
    text.append("  ")
    text.append(f"{snapshot.error_count} error", style="red")
    text.append(f"  of {snapshot.services_total}   ")
    text.append(f"{format_rate(snapshot.events_per_second)} ev/s", style="bold")
    text.append(f"  {snapshot.events_per_hour:,.0f} ev/h  total {snapshot.total_events:,}")
    if snapshot.data_sources_active:
        text.append(f"   data sources: {', '.join(snapshot.data_sources_active)}")
    return text


def snapshot_table(
    snapshot: snapshot_pb2.Snapshot,
    *,
    rows: Iterable[snapshot_pb2.ServiceRow] | None = None,
    now: float | None = None,
    one_line: bool = False,
) -> Table:
    """The services of `snapshot` as a table (`rows` picks and orders them).

    `one_line` cuts long kinds/error texts (with an ellipsis), so that on a wide terminal
    every row is one line and a table refreshed in place does not jump.
    """
    now = time.time() if now is None else now
    table = Table(title=snapshot_title(snapshot), title_justify="left", expand=False)
    table.add_column("SERVICE", no_wrap=True)
    table.add_column("TYPE")
    table.add_column("STATUS", no_wrap=True)
    table.add_column("EV/S", justify="right")
    table.add_column("EV/H", justify="right")
    table.add_column("TOTAL", justify="right")
    table.add_column("UPTIME", justify="right")
    table.add_column("LAST EVENT", justify="right")
    table.add_column("CALL", justify="right")
    table.add_column("KINDS (ev/s) / ERROR")
    for row in snapshot.services if rows is None else rows:
        active = row.status == snapshot_pb2.SERVICE_STATUS_ACTIVE
        text = _kinds(row) if active else row.error_message or "-"
        if one_line and len(text) > DETAIL_WIDTH:
            text = text[: DETAIL_WIDTH - 1] + "…"
        detail = Text(text, style="dim" if active or not row.error_message else "red")
        table.add_row(
            row.service_name,
            row.service_type + (f" ({row.data_source})" if row.data_source else ""),
            status_text(row.status),
            format_rate(row.events_per_second) if active else "-",
            f"{row.events_per_hour:,.0f}" if active else "-",
            f"{row.total_events:,}" if active else "-",
            format_duration(to_seconds(row.uptime)) if active else "-",
            _last_event(row, now) if active else "-",
            f"{to_seconds(row.call_latency) * 1000:.1f} ms",
            detail,
        )
    return table


def snapshot_view(
    snapshot: snapshot_pb2.Snapshot,
    *,
    sort_rate: bool = False,
    now: float | None = None,
    footer: str = "",
    one_line: bool = False,
) -> Group:
    """The table plus its summary line (and an optional footer), ready to print or to `Live`."""
    rows = sort_by_rate(snapshot.services) if sort_rate else None
    parts: list[Table | Text] = [
        snapshot_table(snapshot, rows=rows, now=now, one_line=one_line),
        snapshot_summary(snapshot),
    ]
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)
