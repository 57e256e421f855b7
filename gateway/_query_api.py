"""Seed 003's Prometheus-style queries, answered from the aggregator's history.

GET /api/v1/metrics/query/range?query=&start=&end=&step=   QueryRange   -> resultType matrix
GET /api/v1/metrics/query/instant?query=&time=             QueryInstant -> resultType vector

As Prometheus's HTTP API (`/api/v1/query_range`, `/api/v1/query`) takes and answers them:
`query` is a series selector (`latency_p99_ms{service="weather-api"}`: a figure, and `=`, `!=`,
`=~`, `!~` matchers on `service`, `type`, `kind`); `start`, `end`, `time` are RFC 3339 or Unix
seconds; `step` is a duration (`15s`, `5m`, `1h30m`) or float seconds; `time` defaults to now.
A success is `{"status": "success", "data": {"resultType": ..., "result": [...]}}` with the
series sorted by their labels, timestamps in seconds and values as strings
(`mesh_common.prometheus_api`). A refusal is `{"status": "error", "errorType": ..., "error":
...}`: 400 `bad_data` for a parameter that cannot be read or a query the aggregator refuses
(the error names the parameter, as Prometheus's `invalid parameter "step": ...`), 503
`timeout` past the aggregator's query timeout, 503 `unavailable` when the aggregator is
unreachable or keeps no history, 502 `internal` for anything else it answers.

A request line longer than the gateway's `max_header_bytes` is refused before it gets here
(431, naming the limit); a selector longer than the aggregator's limit (4096 characters) is a
400 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response
from metricsmesh.v1 import history_pb2
from pydantic import BaseModel

from gateway._errors import HistoryCallError
from gateway._history_calls import call_history
from gateway._state import GatewayState
from mesh_common.errors import ParamError
from mesh_common.prometheus_api import (
    matrix_json,
    parse_duration,
    parse_time,
    success_json,
    vector_json,
)

PREFIX = "/api/v1/metrics/query"
JSON = "application/json"
_PARAMS = {"query": "query", "start_time": "start", "end_time": "end", "step": "step"}
_PARAMS |= {"time": "time", "resolution": "step", "matchers": "query"}
"""The aggregator's field names -> this API's parameter names."""
_STATUS = {
    "INVALID_ARGUMENT": (400, "bad_data"),
    "DEADLINE_EXCEEDED": (503, "timeout"),
    "FAILED_PRECONDITION": (503, "unavailable"),
    "UNAVAILABLE": (503, "unavailable"),
}


class PrometheusSeries(BaseModel):
    """One series: its labels (`__name__` is the figure) and its points `[time, "value"]`."""

    metric: dict[str, str]
    values: list[tuple[float, str]] | None = None
    value: tuple[float, str] | None = None


class PrometheusData(BaseModel):
    """The answer: a matrix (range) or a vector (instant)."""

    resultType: Literal["matrix", "vector"]
    result: list[PrometheusSeries]


class PrometheusSuccess(BaseModel):
    """Prometheus's success envelope."""

    status: Literal["success"]
    data: PrometheusData


class PrometheusError(BaseModel):
    """Prometheus's error envelope."""

    status: Literal["error"]
    errorType: str
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": PrometheusError,
        "description": "`bad_data`: a parameter cannot be read (the error names it: `query`, "
        "`start`, `end`, `step`, `time`), or the aggregator refuses the query: a selector it "
        "cannot read or does not support (functions, `[5m]` ranges, offsets, operators, "
        "unknown figures or labels), a range in the future or reversed, a step of 0 or "
        "below, a step finer than the tier that holds the range, more than 11,000 points "
        "per series or more series than `[history] max_series`.",
    },
    502: {"model": PrometheusError, "description": "`internal`: the aggregator failed."},
    503: {
        "model": PrometheusError,
        "description": "`timeout`: the query ran past the aggregator's query timeout; "
        "`unavailable`: the aggregator is unreachable or keeps no history.",
    },
}
QueryParam = Annotated[
    str | None,
    Query(description='A series selector, e.g. `latency_p99_ms{service="weather-api"}`.'),
]


def query_api_router(state: GatewayState) -> APIRouter:
    """The Prometheus-style range and instant queries of seed 003."""
    router = APIRouter(prefix=PREFIX, tags=["history"])

    @router.get(
        "/range",
        response_model=PrometheusSuccess,
        responses=_ERRORS,
        summary="Prometheus-style range query over the history",
    )
    async def query_range(
        query: QueryParam = None,
        start: Annotated[str | None, Query(description="RFC 3339 or Unix seconds.")] = None,
        end: Annotated[str | None, Query(description="RFC 3339 or Unix seconds.")] = None,
        step: Annotated[
            str | None, Query(description="A duration (`15s`, `5m`, `1h30m`) or float seconds.")
        ] = None,
    ) -> Response:
        """One point per step from `start` to `end`, each the figure over the step ending there.

        The answer is Prometheus's `matrix`; a window without data has no point.
        """
        try:
            request = history_pb2.QueryRangeRequest(query=_required("query", query), columns=True)
            request.start_time.FromMilliseconds(parse_time("start", _required("start", start)))
            request.end_time.FromMilliseconds(parse_time("end", _required("end", end)))
            step_ms = parse_duration("step", _required("step", step))
            if step_ms <= 0:
                raise ParamError(
                    "step",
                    "zero or negative query resolution step widths are not accepted. "
                    "Try a positive integer",
                )
            request.step.FromMilliseconds(step_ms)
            response = await call_history(state, "QueryRange", request)
        except (ParamError, HistoryCallError) as error:
            return error_response(error)
        return _answer(matrix_json(response.series))

    @router.get(
        "/instant",
        response_model=PrometheusSuccess,
        responses=_ERRORS,
        summary="Prometheus-style instant query over the history",
    )
    async def query_instant(
        query: QueryParam = None,
        time: Annotated[
            str | None, Query(description="RFC 3339 or Unix seconds; default now.")
        ] = None,
    ) -> Response:
        """The figure over the minute that ends at `time`, per series (Prometheus's `vector`)."""
        try:
            request = history_pb2.QueryInstantRequest(query=_required("query", query))
            if time is not None:
                request.time.FromMilliseconds(parse_time("time", time))
            response = await call_history(state, "QueryInstant", request)
        except (ParamError, HistoryCallError) as error:
            return error_response(error)
        return _answer(vector_json(response.series))

    return router


def _required(name: str, value: str | None) -> str:
    if value is None or value == "":
        raise ParamError(name, "missing")
    return value


def error_response(error: ParamError | HistoryCallError) -> Response:
    """Prometheus's error envelope for `error`, with its HTTP status."""
    if isinstance(error, ParamError):
        status, kind, text = 400, "bad_data", str(error)
    else:
        status, kind = _STATUS.get(error.code, (502, "internal"))
        param = _PARAMS.get(error.field or "")
        text = f'invalid parameter "{param}": {error.detail}' if param else error.detail
    body = {"status": "error", "errorType": kind, "error": text}
    return Response(orjson.dumps(body), status, media_type=JSON)


def _answer(data: bytes) -> Response:
    return Response(success_json(data), media_type=JSON)
