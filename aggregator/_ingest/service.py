"""The ingestion RPCs of AggregatorService: Ingest, ListPushed and GetIngestStats.

Ingest is the one entry the gateway's REST bodies reach (seed 003's ingest and batch, seed
004's events); OTLP's Export (`otlp.py`) feeds the same `Ingestor`. A request over `max_batch`
is INVALID_ARGUMENT naming the limit; refused items are listed in the answer, the rest kept.
With `[ingest] enabled = false` every call is FAILED_PRECONDITION.
"""

from __future__ import annotations

from typing import Any

import grpc
from metricsmesh.v1 import ingest_pb2

from aggregator._errors import BatchTooLarge, UnknownType
from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.model import KindPoint, MetricPoint
from aggregator._ingest.wire import (
    kind_point,
    metric_point,
    metric_type,
    to_pushed_value,
    to_response,
)
from mesh_common.grpc_input import Implementation
from mesh_common.wire_time import set_seconds

Context = grpc.aio.ServicerContext[Any, Any]
DISABLED = "ingestion is disabled on this aggregator ([ingest] enabled = false)"
MAX_LISTED = 100_000
"""The most values one ListPushed answers (its `limit` may ask for fewer)."""


class IngestServicer:
    """The ingestion methods over one `Ingestor` (None: ingestion is off)."""

    def __init__(self, ingestor: Ingestor | None, wall: Any) -> None:
        self._ingestor = ingestor
        self._wall = wall

    def implementations(self) -> dict[str, Implementation]:
        """The ingestion methods of AggregatorService by .proto name."""
        return {
            "Ingest": self.ingest,
            "ListPushed": self.list_pushed,
            "GetIngestStats": self.get_ingest_stats,
        }

    async def _need(self, context: Context) -> Ingestor:
        if self._ingestor is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, DISABLED)
        assert self._ingestor is not None
        return self._ingestor

    async def ingest(
        self, request: ingest_pb2.IngestRequest, context: Context
    ) -> ingest_pb2.IngestResponse:
        """Keep the request's metrics and events; answer what was refused and why."""
        ingestor = await self._need(context)
        response = ingest_pb2.IngestResponse()
        metrics: list[MetricPoint] = []
        untyped: list[tuple[int, str]] = []
        for index, message in enumerate(request.metrics):
            try:
                metrics.append(metric_point(message, metric_type(message.type)))
            except UnknownType as error:
                untyped.append((index, str(error)))
        default = ingestor.settings.default_service
        kinds: list[KindPoint] = [kind_point(message, default) for message in request.events]
        try:
            result = ingestor.ingest(metrics, kinds)
        except BatchTooLarge as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        to_response(result, response)
        if untyped:
            _renumber(response, [index for index, _ in untyped])
            for index, reason in untyped:
                response.rejected.add(item=f"metrics[{index}]", reason=reason)
            ingestor.refused_total[""] += len(untyped)
            response.rejected.sort(key=_order)
        return response

    async def list_pushed(
        self, request: ingest_pb2.ListPushedRequest, context: Context
    ) -> ingest_pb2.ListPushedResponse:
        """The latest value of every pushed series of `name` (every metric's when empty)."""
        ingestor = await self._need(context)
        limit = min(request.limit or MAX_LISTED, MAX_LISTED)
        response = ingest_pb2.ListPushedResponse()
        wall = self._wall()
        add = response.values.add
        for count, series in enumerate(ingestor.series.read(request.name)):
            if count >= limit:
                response.omitted += 1
                continue
            value = add()
            to_pushed_value(series, value)
            set_seconds(value.age, max(0.0, wall - series.time))
        return response

    async def get_ingest_stats(
        self, request: ingest_pb2.GetIngestStatsRequest, context: Context
    ) -> ingest_pb2.GetIngestStatsResponse:
        """What the ingestion path kept and refused since start, and what it holds."""
        ingestor = await self._need(context)
        return ingest_pb2.GetIngestStatsResponse(
            stats=ingest_pb2.IngestStats(
                accepted_total=ingestor.accepted_total,
                rejected_total=sum(ingestor.refused_total.values()),
                series=ingestor.series.count,
                services=len(ingestor.services.services),
                rejected_by_limit=dict(ingestor.refused_total),
            )
        )


def _renumber(response: ingest_pb2.IngestResponse, skipped: list[int]) -> None:
    """Metrics refused for their type were not handed to the path: shift its item numbers."""
    for rejection in response.rejected:
        if rejection.item.startswith("metrics["):
            index = int(rejection.item[8:-1])
            for gone in skipped:
                if gone <= index:
                    index += 1
            rejection.item = f"metrics[{index}]"


def _order(rejection: ingest_pb2.IngestRejection) -> tuple[str, int]:
    what, _, rest = rejection.item.partition("[")
    return what, int(rest.rstrip("]"))
