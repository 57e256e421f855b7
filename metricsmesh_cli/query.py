"""`metrics-mesh query SELECTOR`: figures over time from the aggregator's history (QueryRange).

The range is `--since DURATION` before now, or `--start` to `--end` (RFC 3339 or Unix
seconds; `--end` defaults to now); `--step` is a Prometheus duration or seconds, by default
about a hundredth of the range rounded up to a round step that the tier holding the start
allows (its resolution: GetHistoryStatus says which). The output is a table, one row per
series (its points, minimum, mean, maximum and last value), with `--sparkline` a trend drawn
with block characters per series, or with `-o json` the gateway's answer to the same range
query (Prometheus's HTTP API JSON: `GET /api/v1/metrics/query/range`).

Exit status: 0 once printed, 2 when the aggregator refuses the query (INVALID_ARGUMENT: its
message names the parameter), 1 when it cannot answer (unreachable, history disabled, a
timeout).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from metricsmesh.v1 import aggregator_pb2_grpc, history_pb2
from rich.console import Console
from rich.table import Table

from mesh_common.addresses import HostPort
from mesh_common.auth_client import bearer_interceptors
from mesh_common.errors import EXIT_FAILURE, EXIT_USAGE
from mesh_common.prometheus_api import matrix_json, metric_labels, success_json
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel
from metricsmesh_cli.client import describe_rpc_error

ROUND_STEPS_MS = tuple(
    seconds * 1000
    for seconds in (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                    43200, 86400)
)  # fmt: skip
"""The steps a default step is rounded up to."""
POINTS_WANTED = 100
"""A default step gives about this many points."""
SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60
"""The most characters of one sparkline (points are merged into that many columns)."""


@dataclass(frozen=True, slots=True)
class RangeAsked:
    """The range a command line asks for, in milliseconds since the epoch (step 0: default)."""

    query: str
    start_ms: int
    end_ms: int
    step_ms: int = 0


async def fetch_range(
    target: HostPort,
    asked: RangeAsked,
    *,
    timeout: float,
    tls: TlsSettings | None = None,
    token: str = "",
) -> tuple[history_pb2.QueryRangeResponse, int]:
    """The QueryRange answer and its step (a default one chosen first).

    Raises grpc.aio.AioRpcError.
    """
    interceptors = bearer_interceptors(token)
    async with open_channel(target, tls=tls, interceptors=interceptors) as channel:
        stub: Any = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        step_ms = asked.step_ms
        if not step_ms:
            status = await stub.GetHistoryStatus(
                history_pb2.GetHistoryStatusRequest(), timeout=timeout
            )
            step_ms = default_step(asked.start_ms, asked.end_ms, status, now_ms=asked.end_ms)
        request = history_pb2.QueryRangeRequest(query=asked.query)
        request.start_time.FromMilliseconds(asked.start_ms)
        request.end_time.FromMilliseconds(asked.end_ms)
        request.step.FromMilliseconds(step_ms)
        response: history_pb2.QueryRangeResponse = await stub.QueryRange(request, timeout=timeout)
        return response, step_ms


def default_step(
    start_ms: int, end_ms: int, status: history_pb2.GetHistoryStatusResponse, *, now_ms: int
) -> int:
    """About POINTS_WANTED points, a round step, a multiple of the tier holding `start_ms`."""
    tiers = [
        (tier.tier.resolution.ToMilliseconds(), tier.tier.retention.ToMilliseconds())
        for tier in status.tiers
    ]
    holding = [resolution for resolution, retention in tiers if now_ms - retention <= start_ms]
    resolution = holding[0] if holding else max(tiers, default=(1000, 0), key=lambda t: t[1])[0]
    wanted = max(1, (end_ms - start_ms) // POINTS_WANTED)
    step = next((round_step for round_step in ROUND_STEPS_MS if round_step >= wanted), wanted)
    return max(resolution, math.ceil(step / resolution) * resolution)


def run_query(
    target: HostPort,
    asked: RangeAsked,
    *,
    output: str,
    sparkline: bool,
    console: Console,
    errors: Console,
    timeout: float = 30.0,
    token: str = "",
    tls: TlsSettings | None = None,
) -> int:
    """Ask and print (module doc); returns the exit status."""
    try:
        response, step_ms = asyncio.run(
            fetch_range(target, asked, timeout=timeout, tls=tls, token=token)
        )
    except grpc.aio.AioRpcError as error:
        errors.print(f"metrics-mesh query: {describe_rpc_error(target, error, tls)}", markup=False)
        return EXIT_USAGE if error.code() == grpc.StatusCode.INVALID_ARGUMENT else EXIT_FAILURE
    if output == "json":
        console.file.write(success_json(matrix_json(response.series)).decode() + "\n")
        console.file.flush()
        return 0
    if not response.series:
        console.print(f"no data: {asked.query} has no points in this range", markup=False)
        return 0
    columns = min(SPARK_WIDTH, (asked.end_ms - asked.start_ms) // step_ms + 1)
    console.print(series_table(response, asked, sparkline=columns if sparkline else 0))
    return 0


def series_name(series: history_pb2.HistorySeries) -> str:
    """`figure{label="value", ...}`, as a selector writes it (the fleet's: just the figure)."""
    labels = {k: v for k, v in metric_labels(series).items() if k != "__name__"}
    inner = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{series.figure}{{{inner}}}" if inner else series.figure


def series_table(
    response: history_pb2.QueryRangeResponse, asked: RangeAsked, *, sparkline: int = 0
) -> Table:
    """One row per series: points, min, mean, max, last (and a trend of `sparkline` columns)."""
    ordered = sorted(response.series, key=lambda one: sorted(metric_labels(one).items()))
    tier = ordered[0].tier.text
    table = Table(title=f"{asked.query}  ({_when(asked.start_ms)} to {_when(asked.end_ms)}, "
                        f"tier {tier})", title_justify="left")  # fmt: skip
    for column in ("series", "points", "min", "avg", "max", "last", "last at"):
        table.add_column(column, justify="left" if column in ("series", "last at") else "right")
    if sparkline:
        table.add_column("trend", no_wrap=True)
    for one in ordered:
        values = [point.value for point in one.points]
        cells = [
            series_name(one),
            str(len(values)),
            *(_number(v) for v in (min(values), sum(values) / len(values), max(values))),
            _number(values[-1]),
            _when(one.points[-1].time_millis),
        ]
        if sparkline:
            cells.append(spark(one, asked.start_ms, asked.end_ms, sparkline))
        table.add_row(*cells)
    return table


def spark(series: history_pb2.HistorySeries, start_ms: int, end_ms: int, columns: int) -> str:
    """The series' trend in `columns` block characters, scaled to its own minimum and maximum.

    Each column is the mean of the points that fall in its share of the range; a column
    without points is a blank.
    """
    span = max(1, end_ms - start_ms + 1)
    sums = [0.0] * columns
    counts = [0] * columns
    for point in series.points:
        index = min(columns - 1, max(0, (point.time_millis - start_ms) * columns // span))
        sums[index] += point.value
        counts[index] += 1
    means = [s / c if c else None for s, c in zip(sums, counts, strict=True)]
    present = [m for m in means if m is not None]
    low, high = min(present), max(present)
    scale = (len(SPARKS) - 1) / (high - low) if high > low else 0.0
    return "".join(
        " " if m is None else SPARKS[round((m - low) * scale) if scale else 3] for m in means
    )


def _number(value: float) -> str:
    return f"{value:.4g}"


def _when(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
