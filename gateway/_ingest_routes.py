"""Seed 003's ingestion endpoints, over the aggregator's one ingestion path (Ingest).

POST /api/v1/metrics/ingest   one metric (`gateway._ingest_forms.MetricForm`)
POST /api/v1/metrics/batch    `{"metrics": [...]}`, at most `[ingest] max_batch` (1000)

The gateway checks the JSON's shape and hands every well-formed item to the aggregator's
`Ingest`, which keeps what passes its bounds and names each refusal. The answer is an
`IngestAnswer`: 201 when every item was kept; 422 when any item was refused, listing the kept
ones (`kept`: they are stored) and the refused ones (`rejected`: item, reason, and `limit`, the
aggregator's `[ingest]` setting of the cap it hit). A body that is not JSON, a batch without a
`metrics` list, or over `max_batch` items is refused whole: 422 `{"detail", "field"}`, nothing
kept. A body over `PUSH_BODY_BYTES` is a 413 naming the limit.

`Authorization: Bearer <token>` is accepted; it is checked only when the gateway has an
`admin_token` (the alert write endpoints' token: 401 otherwise), and goes on to the aggregator
as the call's metadata. The REST rate limit (`rate_limit_per_second`) applies as on every API
route.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from metricsmesh.v1 import ingest_pb2
from pydantic import ValidationError

from gateway._alert_routes import _body, authorize, read_json
from gateway._errors import AlertRequestError, IngestCallError
from gateway._ingest_calls import Metadata, call_ingest
from gateway._ingest_forms import (
    BatchForm,
    IngestAnswer,
    IngestError,
    MetricForm,
    Rejection,
    add_metric,
)
from gateway._limits import PUSH_BODY_BYTES
from gateway._state import GatewayState
from gateway._views import json_bytes
from mesh_common.errors import ParamError

PREFIX = "/api/v1/metrics"
JSON = "application/json"

SEED_EXAMPLE = {
    "name": "cpu_usage_percent",
    "type": "gauge",
    "value": 45.2,
    "labels": {"host": "server01", "region": "us-east-1"},
    "help_text": "CPU usage percentage",
    "unit": "percent",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": IngestError, "description": "The gateway has an admin_token; this is not it."},
    413: {"model": IngestError, "description": f"The body is over {PUSH_BODY_BYTES} bytes."},
    422: {
        "model": IngestAnswer,
        "description": "Items were refused: `rejected` names each with its reason and the "
        "limit hit, `kept` the items stored anyway. A body that cannot be read at all (not "
        "JSON, no `metrics` list, more than max_batch items) is `{detail, field}`, nothing kept.",
    },
    429: {"model": IngestError, "description": "Over the REST rate limit (Retry-After)."},
    503: {"model": IngestError, "description": "The aggregator is unreachable or ingests nothing."},
}


def ingest_router(state: GatewayState) -> APIRouter:
    """Seed 003's ingest and batch endpoints."""
    router = APIRouter(prefix=PREFIX, tags=["ingestion"])

    @router.post(
        "/ingest",
        status_code=201,
        response_model=IngestAnswer,
        responses=ERRORS,
        summary="Ingest one metric (seed 003's body)",
        openapi_extra=_body(
            MetricForm.model_json_schema(), {"seed 003": {"value": SEED_EXAMPLE}}, required=True
        ),
    )
    async def ingest(request: Request) -> Response:
        """Keep one gauge or counter value; 201 with the metric as kept, 422 naming why not."""
        try:
            metadata = authorize(state, request)
            body = await read_json(request, required=True, limit=PUSH_BODY_BYTES)
            return await _ingest(state, [body], metadata, _client(request), single=True)
        except AlertRequestError as error:
            return _refusal(error.status, error.detail, error.field, error.challenge)
        except IngestCallError as error:
            return _refusal(error.status, error.detail)

    @router.post(
        "/batch",
        status_code=201,
        response_model=IngestAnswer,
        responses=ERRORS,
        summary="Ingest a batch of metrics (at most 1000)",
        openapi_extra=_body(
            BatchForm.model_json_schema(),
            {"seed 003": {"value": {"metrics": [SEED_EXAMPLE]}}},
            required=True,
        ),
    )
    async def batch(request: Request) -> Response:
        """Keep every metric that passes; 201 when all did, else 422 with `kept` and `rejected`."""
        try:
            metadata = authorize(state, request)
            body = await read_json(request, required=True, limit=PUSH_BODY_BYTES)
            if not isinstance(body, dict) or not isinstance(body.get("metrics"), list):
                raise AlertRequestError(422, 'the body must be {"metrics": [...]}', field="metrics")
            if set(body) != {"metrics"}:
                unknown = sorted(set(body) - {"metrics"})[0]
                raise AlertRequestError(422, f"unknown field {unknown!r}", field=unknown)
            return await _ingest(state, body["metrics"], metadata, _client(request), single=False)
        except AlertRequestError as error:
            return _refusal(error.status, error.detail, error.field, error.challenge)
        except IngestCallError as error:
            return _refusal(error.status, error.detail, "metrics" if error.status == 422 else None)

    return router


async def _ingest(
    state: GatewayState, items: Sequence[Any], metadata: Metadata, client: str, *, single: bool
) -> Response:
    """Check each item's shape, send the good ones to Ingest, answer what was kept."""
    names = ["metric"] if single else [f"metrics[{index}]" for index in range(len(items))]
    refused: dict[int, Rejection] = {}
    sent: list[int] = []
    request = ingest_pb2.IngestRequest()
    for index, item in enumerate(items):
        try:
            add_metric(request, item)
        except ValidationError as error:
            refused[index] = Rejection(item=names[index], reason=_reason(error), limit="")
            continue
        except ParamError as error:
            refused[index] = Rejection(item=names[index], reason=str(error), limit="")
            continue
        sent.append(index)
    if sent:
        request.client = client
        response = await call_ingest(state, "Ingest", request, metadata)
        for rejection in response.rejected:
            index = sent[int(rejection.item.rpartition("[")[2].rstrip("]"))]
            refused[index] = Rejection(
                item=names[index], reason=rejection.reason, limit=rejection.limit
            )
    kept = [names[index] for index in range(len(items)) if index not in refused]
    rejected = [refused[index].model_dump() for index in sorted(refused)]
    answer: dict[str, Any] = {"accepted": len(kept), "kept": kept, "rejected": rejected}
    if single and not refused:
        answer["metric"] = MetricForm.model_validate(items[0]).model_dump(exclude_none=True)
    if refused:
        first = rejected[0]
        answer["detail"] = (
            f"{len(rejected)} of {len(items)} refused; first {first['item']}: {first['reason']}"
        )
        return Response(json_bytes(answer), 422, media_type=JSON)
    return Response(json_bytes(answer), 201, media_type=JSON)


def _reason(error: ValidationError) -> str:
    """The first problem of an item, as `field: message`."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "item"
    return f"{where}: {first['msg']}"


def _client(request: Request) -> str:
    """Who pushed, for the aggregator's per-client limits and logs: the client's address."""
    return request.client.host if request.client else ""


def _refusal(
    status: int, detail: str, field: str | None = None, challenge: str | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": challenge} if challenge else None
    return JSONResponse({"detail": detail, "field": field}, status, headers=headers)
