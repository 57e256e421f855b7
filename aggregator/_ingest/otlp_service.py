"""OTLP/gRPC on the aggregator: `opentelemetry.proto.collector.metrics.v1.MetricsService`.

The servicer is the `opentelemetry-proto` package's own (`MetricsServiceServicer`); `handler()`
registers it as the mesh registers every service (`mesh_common.grpc_input.service_handler`),
so a malformed request is INVALID_ARGUMENT with a short message, not UNKNOWN and a traceback.
Export answers `partial_success` for what it refused (`otlp.export`); with `[ingest] enabled =
false` it is FAILED_PRECONDITION.
"""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.otlp import export
from aggregator._ingest.service import DISABLED
from mesh_common.grpc_input import service_handler

SERVICE = metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"]
SERVICE_NAME = SERVICE.full_name
"""`opentelemetry.proto.collector.metrics.v1.MetricsService` (for reflection and health)."""


class OtlpMetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    """MetricsService/Export over one `Ingestor` (None: ingestion is off)."""

    def __init__(self, ingestor: Ingestor | None) -> None:
        self._ingestor = ingestor

    async def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        """Keep the request's data points; count and name the refused ones."""
        if self._ingestor is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, DISABLED)
        assert self._ingestor is not None
        return export(self._ingestor, request)

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's handler, for `server.add_generic_rpc_handlers`."""
        return service_handler(SERVICE, {"Export": self.Export})
