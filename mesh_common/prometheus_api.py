"""Prometheus's HTTP API: its times, durations and numbers read, its query answers written.

The gateway's Prometheus-style history endpoints and `metrics-mesh query` share these, so a
step or a time means the same on both and `-o json` prints the gateway's answer.

Read (Prometheus's `web/api/v1` rules): a time is Unix seconds as a decimal number (the
fraction rounded to the millisecond) or an RFC 3339 timestamp (`2024-01-01T00:00:00Z`,
`2024-01-01T01:00:00.5+02:00`); a duration is decimal seconds (`15`, `0.5`) or a Prometheus
duration, units in this order, each at most once: `1y2w3d4h5m6s7ms` (`y` = 365 days,
`w` = 7 days). Anything else is a `ParamError` naming the parameter and the text.

Written (Prometheus's JSON): a timestamp is seconds with the milliseconds after a point when
there are any (`1700000000`, `1700000000.500`), a value a string in Go's shortest decimal form
without an exponent (`"0.5"`, `"0.0000001"`, `"12"`, `"NaN"`, `"+Inf"`); `matrix_json` and
`vector_json` write a range and an instant answer's `data` from the history's series, sorted
by their labels (`__name__` is the figure) as Prometheus sorts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from operator import attrgetter
from typing import Any

import orjson
from metricsmesh.v1 import history_pb2

from mesh_common.bounded import quote
from mesh_common.errors import ParamError

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_DURATION = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?"
    r"(?:([0-9]+)ms)?"
)
_UNIT_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
MAX_TIME_MS = 253_402_300_799_000
"""The end of year 9999 (RFC 3339's last instant), in ms since the epoch; later is refused."""
MAX_DURATION_MS = (2**63 - 1) // 1_000_000
"""The longest duration (Go's time.Duration: int64 nanoseconds)."""
MAX_PARAM_LENGTH = 64
"""The longest time or duration text read (longer ones are refused unread)."""


def parse_time(name: str, text: str) -> int:
    """Milliseconds since the epoch of `text` (Unix seconds or RFC 3339); ParamError."""
    if len(text) <= MAX_PARAM_LENGTH:
        if _NUMBER.fullmatch(text):
            if abs(float(text)) * 1000 <= MAX_TIME_MS:  # before Decimal: 1e999999 stays cheap
                return int((Decimal(text) * 1000).quantize(Decimal(1), ROUND_HALF_UP))
        elif (found := _RFC3339.fullmatch(text)) is not None:
            millis_or_none = _rfc3339_millis(found)
            if millis_or_none is not None:
                return millis_or_none
    raise ParamError(name, f"cannot parse {quote(text, 60)} to a valid timestamp")


def _rfc3339_millis(found: re.Match[str]) -> int | None:
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    fraction, zone = found.group(7) or "", found.group(8)
    try:
        offset = UTC
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if minutes > 59:
                return None
            offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
        moment = datetime(year, month, day, hour, minute, second, tzinfo=offset)
    except ValueError:
        return None
    whole = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    millis = int((fraction[1:] + "000")[:3]) if fraction else 0
    return whole * 1000 + millis


def parse_duration(name: str, text: str) -> int:
    """Milliseconds of `text` (decimal seconds or a Prometheus duration); ParamError.

    Zero and negative durations parse (the caller says why they are refused).
    """
    if len(text) <= MAX_PARAM_LENGTH:
        if _NUMBER.fullmatch(text):
            if abs(float(text)) * 1000 <= MAX_DURATION_MS:
                return int((Decimal(text) * 1000).to_integral_value(ROUND_FLOOR))
        elif text and (found := _DURATION.fullmatch(text)) is not None:
            parts = zip(found.groups(), _UNIT_MS, strict=True)
            millis = sum(int(part) * unit for part, unit in parts if part)
            if millis <= MAX_DURATION_MS:
                return millis
    raise ParamError(name, f"cannot parse {quote(text, 60)} to a valid duration")


def format_duration(millis: int) -> str:
    """A Prometheus duration for people (`5m`, `1h30m`, `1.5s`)."""
    if millis % 1000:
        return f"{millis / 1000:g}s"
    seconds = millis // 1000
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def prometheus_timestamp(millis: int) -> str:
    """A timestamp as Prometheus's JSON writes it: seconds, `.mmm` when there are any."""
    sign, millis = ("-", -millis) if millis < 0 else ("", millis)
    seconds, fraction = divmod(millis, 1000)
    return f"{sign}{seconds}.{fraction:03d}" if fraction else f"{sign}{seconds}"


def prometheus_value(value: float) -> str:
    """A sample value as Prometheus's JSON writes it (Go's `FormatFloat(v, 'f', -1, 64)`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text.removesuffix(".0")


def success_json(data: bytes) -> bytes:
    """Prometheus's success envelope around `data` (a `matrix_json` or `vector_json`)."""
    return b'{"status":"success","data":' + data + b"}"


def metric_labels(series: history_pb2.HistorySeries) -> dict[str, str]:
    """A series' labels as Prometheus shows them: the figure as `__name__`, then the rest."""
    return {"__name__": series.figure, **dict(series.labels)}


def _sorted(series: Iterable[history_pb2.HistorySeries]) -> list[tuple[bytes, Any]]:
    """(the metric's JSON, the series), sorted by the labels as Prometheus sorts them."""
    labelled = [(sorted(metric_labels(one).items()), one) for one in series]
    labelled.sort(key=lambda pair: pair[0])
    return [(orjson.dumps(dict(labels)), one) for labels, one in labelled]


def _point(point: history_pb2.HistoryPoint) -> str:
    return f'[{prometheus_timestamp(point.time_millis)},"{prometheus_value(point.value)}"]'


_TIME_AND_VALUE = attrgetter("time_millis", "value")


def _columns(series: history_pb2.HistorySeries) -> tuple[Sequence[int], Sequence[float]]:
    """A series' point times and values: its packed columns, or read from its points."""
    if series.point_values or not series.points:
        return series.point_times_millis, series.point_values
    pairs = list(map(_TIME_AND_VALUE, series.points))
    return [time for time, _ in pairs], [value for _, value in pairs]


def _points(times: Sequence[int], values: Sequence[float]) -> str:
    """`[t,"v"],...` of the points, exactly as `_point` writes each, in one pass.

    Whole-second timestamps and values without an exponent, NaN or infinity (nearly all)
    are written by one f-string each, Go's shortest form of a value being `repr` without
    a trailing `.0`; the rest point by point. A third less time per point than `_point`
    (bench/bench_history_query.py, the gateway's figures).
    """
    pairs = zip(times, values, strict=True)
    text = ",".join([f'[{time // 1000},"{value!r}"]' for time, value in pairs])
    if "e" in text or "n" in text or any(time % 1000 for time in times):
        # an exponent, nan, inf or milliseconds: as Prometheus writes them
        return ",".join(
            f'[{prometheus_timestamp(time)},"{prometheus_value(value)}"]'
            for time, value in zip(times, values, strict=True)
        )
    return text.replace('.0"]', '"]')


def matrix_json(series: Iterable[history_pb2.HistorySeries]) -> bytes:
    """A range answer's `data`, written directly (a float's repr is not Prometheus's time)."""
    parts = [
        b'{"metric":' + metric + b',"values":[' + _points(*_columns(one)).encode() + b"]}"
        for metric, one in _sorted(series)
    ]
    return b'{"resultType":"matrix","result":[' + b",".join(parts) + b"]}"


def vector_json(series: Iterable[history_pb2.HistorySeries]) -> bytes:
    """An instant answer's `data`: each series' one point."""
    parts = [
        b'{"metric":' + metric + b',"value":' + _point(one.points[0]).encode() + b"}"
        for metric, one in _sorted(series)
    ]
    return b'{"resultType":"vector","result":[' + b",".join(parts) + b"]}"
