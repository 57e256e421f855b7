"""Seed 003's metric queries, answered from the aggregator's history.

POST /api/v1/metrics/query                 QueryRange with an aggregation (seed 003's body)
GET  /api/v1/metrics/latest/{metric_name}  QueryLatest: the newest value per label set, and
                                           ListPushed: a pushed metric's latest values
GET  /api/v1/metrics/aggregated            QueryRange with avg, min, max and count: a tier's rows

`metric_name` is a figure of the history (`events_per_second`, `error_rate`,
`latency_p99_ms`, `cpu_usage_percent`, ...; `/api/v1/schema` and the README list them) or a
metric pushed to the mesh (seed 003's `cpu_usage_percent{host="server01"}`: each label set is a
series); the label filters are exact values of `service`, `type` and `kind` (a body's `labels`
object, or query parameters), and of any label of a pushed metric (a body's `labels`; such a
label on a name nothing was pushed under is refused with the field `labels`). Times are RFC 3339
or Unix seconds, steps and tiers Prometheus durations (`5m`) or seconds. Answers carry ISO 8601
UTC timestamps, as the gateway's other bodies do.
A refusal is `{"detail": ..., "field": ...}`: 422 for a body or parameter that cannot be read
or a query the aggregator refuses (`field` names it: an unknown figure is `metric_name`), 413
for a body over 64 KiB, 503 when the aggregator is unreachable or keeps no
history, 504 past its query timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from metricsmesh.v1 import history_pb2
from pydantic import BaseModel, Field

from gateway._alert_routes import _body, read_json
from gateway._errors import AlertRequestError, HistoryCallError
from gateway._history_calls import call_history
from gateway._pushed_reads import pushed_latest
from gateway._state import GatewayState
from mesh_common.bounded import quote
from mesh_common.errors import ParamError
from mesh_common.prometheus_api import format_duration, parse_duration, parse_time
from mesh_common.wire_time import iso_utc

PREFIX = "/api/v1/metrics"
LABELS = ("service", "type", "kind")
"""The labels of the mesh's own series (a pushed metric's may be any label name)."""
AGGREGATIONS = {
    "avg": history_pb2.HISTORY_AGGREGATION_AVG,
    "min": history_pb2.HISTORY_AGGREGATION_MIN,
    "max": history_pb2.HISTORY_AGGREGATION_MAX,
    "sum": history_pb2.HISTORY_AGGREGATION_SUM,
    "count": history_pb2.HISTORY_AGGREGATION_COUNT,
}
BODY_KEYS = ("metric_name", "start_time", "end_time", "step", "aggregation", "labels")
MAX_NAME_LENGTH = 200
"""The longest metric name or label value read."""
DEFAULT_AGGREGATED_SECONDS = 86_400
"""`/aggregated` without `start`: the last day."""
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_STATUS = {
    "INVALID_ARGUMENT": 422,
    "DEADLINE_EXCEEDED": 504,
    "FAILED_PRECONDITION": 503,
    "UNAVAILABLE": 503,
}


class HistoryError(BaseModel):
    """The error body: what is wrong and the field or parameter at fault."""

    detail: str
    field: str | None = None


class QueryValue(BaseModel):
    """One aggregated value of a series, at the end of its step."""

    timestamp: str
    value: float


class QuerySeries(BaseModel):
    """One series of a query: its labels, the tier its values come from, its values."""

    labels: dict[str, str]
    tier: str
    values: list[QueryValue]


class QueryAnswer(BaseModel):
    """The answer to POST /api/v1/metrics/query."""

    metric_name: str
    aggregation: str
    step: str
    start_time: str
    end_time: str
    labels: dict[str, str]
    resolution: str | None = Field(description="the spacing of the values aggregated")
    series: list[QuerySeries]
    count: int


class LatestValue(BaseModel):
    """The newest value of one series and when it was taken."""

    labels: dict[str, str]
    value: float
    timestamp: str
    tier: str | None = Field(description="The history tier it comes from; null when pushed.")
    source: str = Field(
        description="history (a figure of the mesh, stored per round) or pushed (a series "
        "pushed to the mesh: its latest value as the aggregator holds it, ListPushed)."
    )
    type: str | None = Field(default=None, description="A pushed series': gauge or counter.")
    help_text: str | None = Field(default=None, description="A pushed series' help text.")
    unit: str | None = Field(default=None, description="A pushed series' unit.")


class LatestAnswer(BaseModel):
    """The answer to GET /api/v1/metrics/latest/{metric_name}."""

    metric_name: str
    values: list[LatestValue]
    count: int


class AggregatedRow(BaseModel):
    """One step of a tier's rolled-up values."""

    timestamp: str
    avg: float
    min: float
    max: float
    count: int


class AggregatedSeries(BaseModel):
    """One series' rows."""

    labels: dict[str, str]
    rows: list[AggregatedRow]


class AggregatedAnswer(BaseModel):
    """The answer to GET /api/v1/metrics/aggregated."""

    metric_name: str
    tier: str
    step: str
    start_time: str
    end_time: str
    series: list[AggregatedSeries]
    count: int


_QUERY_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["metric_name", "start_time", "end_time"],
    "properties": {
        "metric_name": {"type": "string", "example": "cpu_usage_percent"},
        "start_time": {"type": "string", "description": "RFC 3339 or Unix seconds"},
        "end_time": {"type": "string", "description": "RFC 3339 or Unix seconds"},
        "step": {"type": "string", "default": "5m", "description": "a duration or seconds"},
        "aggregation": {"enum": list(AGGREGATIONS), "default": "avg"},
        "labels": {
            "type": "object",
            "properties": {label: {"type": "string"} for label in LABELS},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
_QUERY_EXAMPLES = {
    "seed 003": {
        "value": {
            "metric_name": "cpu_usage_percent",
            "start_time": "2024-01-01T00:00:00Z",
            "end_time": "2024-01-01T01:00:00Z",
            "step": "5m",
            "aggregation": "avg",
        }
    },
    "one service": {
        "value": {
            "metric_name": "latency_p99_ms",
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-01T06:00:00Z",
            "step": "15m",
            "aggregation": "max",
            "labels": {"service": "weather-api"},
        }
    },
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        413: "The body is larger than 64 KiB.",
        422: "A body field or parameter cannot be read, or the aggregator refuses the query "
        "(a range in the future or reversed, a step of 0, a step finer than the tier that "
        "holds the range, too many points or series); `field` names it.",
        503: "The aggregator is unreachable or keeps no history.",
        504: "The query ran past the aggregator's query timeout.",
    }
    return {status: {"model": HistoryError, "description": text[status]} for status in statuses}


def history_router(state: GatewayState) -> APIRouter:
    """Seed 003's query, latest and aggregated endpoints."""
    router = APIRouter(prefix=PREFIX, tags=["history"])
    for add_routes in (_query_route, _latest_route, _aggregated_route):
        add_routes(router, state)
    return router


def _query_route(router: APIRouter, state: GatewayState) -> None:
    @router.post(
        "/query",
        response_model=QueryAnswer,
        responses=_errors(413, 422, 503, 504),
        summary="A figure over a time range, aggregated per step (seed 003's body)",
        openapi_extra=_body(_QUERY_BODY, _QUERY_EXAMPLES, required=True),
    )
    async def query(request: Request) -> JSONResponse:
        """Per series of `metric_name` (filtered by `labels`), one value per `step`.

        Each value is the `aggregation` (avg, min, max, sum, count) of the figure's values
        within the step, at the resolution of the finest tier that holds `start_time`.

        Defaults: `step` 5m, `aggregation` avg. A range with no stored data answers an empty
        `series`.
        """
        body: _QueryBody | None = None
        try:
            body = _query_body(await read_json(request, required=True))
            response = await call_history(state, "QueryRange", body.request)
        except AlertRequestError as error:
            return _refusal(error.status, error.detail, error.field)
        except (ParamError, HistoryCallError) as error:
            return _error_response(error, {"query": body_field(body)})
        series = [
            {
                "labels": dict(one.labels),
                "tier": one.tier.text,
                "values": [
                    {"timestamp": iso_utc(p.time_millis / 1000), "value": p.value}
                    for p in one.points
                ],
            }
            for one in sorted(response.series, key=_label_order)
        ]
        resolution = response.resolution.ToMilliseconds() if response.HasField("resolution") else 0
        return JSONResponse(
            {
                **body.echo,
                "resolution": format_duration(resolution) if resolution else None,
                "series": series,
                "count": len(series),
            }
        )


class _QueryBody:
    """A POST /query body, checked: the request to send and what the answer repeats."""

    def __init__(self, request: history_pb2.QueryRangeRequest, echo: dict[str, Any]) -> None:
        self.request = request
        self.echo = echo


def body_field(body: _QueryBody | None) -> str:
    """The body's field a refused selector points at.

    `labels` when they name a label other than the mesh's (only a pushed metric has those),
    else `metric_name`.
    """
    labels = {} if body is None else body.echo["labels"]
    return "labels" if set(labels) - set(LABELS) else "metric_name"


def _query_body(body: Any) -> _QueryBody:
    if not isinstance(body, dict):
        raise ParamError("body", "must be a JSON object")
    unknown = sorted(set(body) - set(BODY_KEYS))
    if unknown:
        raise ParamError(unknown[0], f"unknown field; the fields are {', '.join(BODY_KEYS)}")
    name = _metric_name(body.get("metric_name"))
    labels = _labels(body.get("labels", {}))
    times = {key: parse_time(key, _text(key, body.get(key))) for key in ("start_time", "end_time")}
    step_text = _text("step", body.get("step", "5m"))
    step = parse_duration("step", step_text)
    aggregation = body.get("aggregation", "avg")
    if aggregation not in AGGREGATIONS:
        raise ParamError("aggregation", f"must be one of {', '.join(AGGREGATIONS)}")
    request = history_pb2.QueryRangeRequest(
        query=selector(name, labels), aggregations=[AGGREGATIONS[aggregation]]
    )
    request.start_time.FromMilliseconds(times["start_time"])
    request.end_time.FromMilliseconds(times["end_time"])
    request.step.FromMilliseconds(step)
    echo = {
        "metric_name": name,
        "aggregation": aggregation,
        "step": step_text,
        "start_time": iso_utc(times["start_time"] / 1000),
        "end_time": iso_utc(times["end_time"] / 1000),
        "labels": labels,
    }
    return _QueryBody(request, echo)


def _latest_route(router: APIRouter, state: GatewayState) -> None:
    @router.get(
        "/latest/{metric_name}",
        response_model=LatestAnswer,
        responses=_errors(422, 503, 504),
        summary="The latest value of a figure, per service (and kind)",
    )
    async def latest(
        metric_name: Annotated[str, Path(description="A figure, e.g. cpu_usage_percent.")],
        service: Annotated[str | None, Query(description="Only this service.")] = None,
        type: Annotated[str | None, Query(description="Only services of this type.")] = None,
        kind: Annotated[str | None, Query(description="Only this kind of event.")] = None,
    ) -> JSONResponse:
        """The latest value per label set, with its time: pushed series, then the mesh's own.

        A metric pushed to the mesh (seed 003's ingest) answers the latest value of each of
        its label sets as the aggregator holds it (`source` pushed; `service`, `type`, `kind`
        keep the series whose labels have those values). A figure of the mesh answers each
        series' newest stored sample (`source` history), a round of the finest tier that has
        one: event figures have a series per kind, per service and for the fleet; status,
        availability, call latency and CPU one per service. A name that is both (a pushed
        `cpu_usage_percent` beside the services' own) answers both; a label set held by both
        is answered once, from the pushed value. A history error (none kept, unreachable) is
        the answer only when there is no pushed value.
        """
        try:
            labels = _labels({"service": service, "type": type, "kind": kind})
            name = _metric_name(metric_name)
        except ParamError as error:
            return _error_response(error, {})
        pushed, stored = await asyncio.gather(
            pushed_latest(state, name, labels), _stored_latest(state, selector(name, labels))
        )
        if isinstance(stored, HistoryCallError):
            if not pushed:
                return _error_response(stored, {"query": "metric_name"})
            stored = []
        held = {tuple(sorted(value["labels"].items())) for value in pushed}
        values = pushed + [
            value for value in stored if tuple(sorted(value["labels"].items())) not in held
        ]
        return JSONResponse({"metric_name": metric_name, "values": values, "count": len(values)})


async def _stored_latest(
    state: GatewayState, query: str
) -> list[dict[str, Any]] | HistoryCallError:
    """The newest stored sample of each series of `query` (QueryLatest), or why not."""
    try:
        response = await call_history(
            state, "QueryLatest", history_pb2.QueryLatestRequest(query=query)
        )
    except HistoryCallError as error:
        return error
    return [
        {
            "labels": dict(one.labels),
            "value": one.points[0].value,
            "timestamp": iso_utc(one.points[0].time_millis / 1000),
            "tier": one.tier.text,
            "source": "history",
        }
        for one in sorted(response.series, key=_label_order)
    ]


def _aggregated_route(router: APIRouter, state: GatewayState) -> None:
    @router.get(
        "/aggregated",
        response_model=AggregatedAnswer,
        responses=_errors(422, 503, 504),
        summary="A tier's rolled-up rows: avg, min, max and count per step",
    )
    async def aggregated(
        metric_name: Annotated[str, Query(description="A figure, e.g. latency_p99_ms.")],
        start: Annotated[
            str | None, Query(description="RFC 3339 or Unix seconds; default a day before end.")
        ] = None,
        end: Annotated[
            str | None, Query(description="RFC 3339 or Unix seconds; default now.")
        ] = None,
        step: Annotated[str, Query(description="A duration (`1h`) or seconds.")] = "1h",
        tier: Annotated[
            str | None,
            Query(
                description="The tier's resolution (`1s`, `1m`, `5m`); default the finest "
                "tier that holds `start`."
            ),
        ] = None,
        service: Annotated[str | None, Query(description="Only this service.")] = None,
        type: Annotated[str | None, Query(description="Only services of this type.")] = None,
        kind: Annotated[str | None, Query(description="Only this kind of event.")] = None,
    ) -> JSONResponse:
        """Per series and `step`: avg, min, max and count of the figure's values in the step.

        The values are the figure at the tier's resolution (as TimescaleDB's continuous
        aggregates hold them); the step must be a whole multiple of that resolution.
        """
        try:
            labels = _labels({"service": service, "type": type, "kind": kind})
            request = history_pb2.QueryRangeRequest(
                query=selector(_metric_name(metric_name), labels),
                aggregations=[AGGREGATIONS[name] for name in ("avg", "min", "max", "count")],
            )
            end_ms = parse_time("end", end) if end else int(state.clocks.wall() * 1000)
            start_ms = (
                parse_time("start", start) if start else end_ms - DEFAULT_AGGREGATED_SECONDS * 1000
            )
            request.start_time.FromMilliseconds(start_ms)
            request.end_time.FromMilliseconds(end_ms)
            request.step.FromMilliseconds(parse_duration("step", step))
            if tier is not None:
                request.resolution.FromMilliseconds(parse_duration("tier", tier))
            response = await call_history(state, "QueryRange", request)
        except (ParamError, HistoryCallError) as error:
            fields = {"query": "metric_name", "start_time": "start", "end_time": "end"}
            return _error_response(error, fields | {"resolution": "tier"})
        return JSONResponse(_aggregated_body(response, metric_name, step, start_ms, end_ms))


def _aggregated_body(
    response: history_pb2.QueryRangeResponse, name: str, step: str, start_ms: int, end_ms: int
) -> dict[str, Any]:
    """The rows of avg, min, max and count, zipped by time, per label set."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    labels_of: dict[str, dict[str, str]] = {}
    order = {value: key for key, value in AGGREGATIONS.items()}
    tier = ""
    for one in response.series:
        key = json.dumps(sorted(one.labels.items()))
        labels_of[key] = dict(one.labels)
        tier = one.tier.text
        by_time = rows.setdefault(key, {})
        for point in one.points:
            row = by_time.setdefault(
                point.time_millis, {"timestamp": iso_utc(point.time_millis / 1000)}
            )
            value = point.value
            row[order[one.aggregation]] = int(value) if order[one.aggregation] == "count" else value
    series = [
        {"labels": labels_of[key], "rows": [by_time[t] for t in sorted(by_time)]}
        for key, by_time in sorted(rows.items())
    ]
    return {
        "metric_name": name,
        "tier": tier,
        "step": step,
        "start_time": iso_utc(start_ms / 1000),
        "end_time": iso_utc(end_ms / 1000),
        "series": series,
        "count": len(series),
    }


# --- the shared parts -------------------------------------------------------------------------


def selector(name: str, labels: dict[str, str]) -> str:
    """The series selector of a figure and exact label values, e.g. `events{service="a"}`."""
    if not labels:
        return name
    matchers = ", ".join(
        f"{label}={json.dumps(value, ensure_ascii=False)}" for label, value in labels.items()
    )
    return f"{name}{{{matchers}}}"


def _metric_name(value: Any) -> str:
    text = _text("metric_name", value)
    if len(text) > MAX_NAME_LENGTH or not _NAME.fullmatch(text):
        raise ParamError("metric_name", f"{quote(text, 60)} is not a figure's name")
    return text


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ParamError("labels", "must be an object of label: value")
    labels = {}
    for label, text in value.items():
        if text is None:
            continue
        if not _LABEL.fullmatch(label) or label == "__name__":
            raise ParamError(
                "labels",
                f"{quote(label, 40)} is not a label name ({', '.join(LABELS)}, or a pushed "
                "metric's label)",
            )
        if not isinstance(text, str) or len(text) > MAX_NAME_LENGTH:
            raise ParamError(label, f"must be a text of at most {MAX_NAME_LENGTH} characters")
        labels[label] = text
    return labels


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise ParamError(name, "missing" if value is None else "must be a text")
    if isinstance(value, int | float):
        return repr(value)
    if not isinstance(value, str):
        raise ParamError(name, "must be a text")
    return value


def _label_order(series: history_pb2.HistorySeries) -> list[tuple[str, str]]:
    return sorted(series.labels.items())


def _error_response(error: ParamError | HistoryCallError, fields: dict[str, str]) -> JSONResponse:
    if isinstance(error, ParamError):
        return _refusal(422, error.reason, error.param)
    field = fields.get(error.field or "", error.field)
    return _refusal(_STATUS.get(error.code, 502), error.detail, field)


def _refusal(status: int, detail: str, field: str | None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status)
