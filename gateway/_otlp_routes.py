"""OTLP/HTTP on the gateway: `POST /v1/metrics`, forwarded to the aggregator's OTLP/gRPC.

The body is an `ExportMetricsServiceRequest`, binary (`application/x-protobuf`) or OTLP JSON
(`application/json`: protobuf's JSON mapping, 64-bit integers as strings or numbers, enums as
numbers), optionally `Content-Encoding: gzip`. The gateway parses it (so an undecodable body
never reaches the aggregator), calls `MetricsService/Export` on the aggregator over its one
unary channel (the alert hub's), and answers the `ExportMetricsServiceResponse` in the
request's content type: `partial_success` counts and names what was refused.

Errors, as OTLP/HTTP defines them (the body a `google.rpc.Status` in the request's content
type, JSON when that type is not one of the two): 400 an undecodable body, 413 a body (read or
inflated) past `PUSH_BODY_BYTES`, 415 another content type or encoding, 429 past the gateway's
per-client rate limit (`gateway._limits`, with `Retry-After`), 503 the aggregator unreachable
(retryable), 504 no answer in time, 409 ingestion turned off on the aggregator.
"""

from __future__ import annotations

import zlib
from typing import Any

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from gateway._errors import GatewayError, OtlpHttpError
from gateway._limits import PUSH_BODY_BYTES
from gateway._state import GatewayState
from mesh_common.bounded import shorten

PATH = "/v1/metrics"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CALL_TIMEOUT_SECONDS = 10.0
"""Deadline of the Export call to the aggregator."""
Request_ = metrics_service_pb2.ExportMetricsServiceRequest
BAD = grpc.StatusCode.INVALID_ARGUMENT

_HTTP_STATUS = {
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
}


async def read_body(request: Request) -> bytes:
    """The request's body, inflated when gzip; OtlpHttpError 413 past PUSH_BODY_BYTES, 415."""
    too_large = OtlpHttpError(
        413,
        f"the body is larger than {PUSH_BODY_BYTES} bytes (the gateway's OTLP body limit)",
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > PUSH_BODY_BYTES:
        raise too_large
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise OtlpHttpError(
            415,
            f"Content-Encoding {encoding[:40]!r} is not supported (gzip or none)",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    body = bytearray()
    async for chunk in request.stream():
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, PUSH_BODY_BYTES + 1 - len(body))
            except zlib.error as error:
                raise OtlpHttpError(
                    400,
                    f"the gzip body cannot be inflated: {error}",
                    grpc.StatusCode.INVALID_ARGUMENT,
                ) from None
            if inflate.unconsumed_tail:
                raise too_large
        body += chunk
        if len(body) > PUSH_BODY_BYTES:
            raise too_large
    return bytes(body)


def parse(body: bytes, content_type: str) -> Request_:
    """The request message of `body`; OtlpHttpError 400 when it does not decode."""
    message = Request_()
    try:
        if content_type == JSON:
            json_format.Parse(body, message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, ValueError, RecursionError) as error:
        kind = "OTLP JSON" if content_type == JSON else "a protobuf ExportMetricsServiceRequest"
        raise OtlpHttpError(
            400,
            f"the body is not {kind}: {shorten(str(error), 200)}",
            grpc.StatusCode.INVALID_ARGUMENT,
        ) from None
    return message


def encode(message: Message, content_type: str) -> bytes:
    """`message` in `content_type` (OTLP JSON: lowerCamelCase names)."""
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def content_type_of(request: Request) -> str | None:
    """PROTOBUF or JSON from the Content-Type header (parameters ignored); None for others."""
    value = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return value if value in (PROTOBUF, JSON) else None


async def forward(state: GatewayState, message: Request_) -> Message:
    """The aggregator's answer to `message`; OtlpHttpError when the call fails."""
    try:
        # The package's generated stub (its _grpc module has no annotations).
        stub = metrics_service_pb2_grpc.MetricsServiceStub(state.alerts.channel)  # type: ignore[no-untyped-call]
        answer: Message = await stub.Export(message, timeout=CALL_TIMEOUT_SECONDS)
    except GatewayError as error:  # the channel is not open (not started)
        raise OtlpHttpError(503, str(error), grpc.StatusCode.UNAVAILABLE) from None
    except grpc.aio.AioRpcError as error:
        code = error.code()
        detail = error.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            detail = f"the aggregator at {state.settings.aggregator} is unreachable ({detail})"
        raise OtlpHttpError(_HTTP_STATUS.get(code, 502), detail, code) from None
    return answer


def _error(error: OtlpHttpError, content_type: str) -> Response:
    status = status_pb2.Status(code=error.code.value[0], message=error.detail)
    return Response(encode(status, content_type), error.status, media_type=content_type)


_DOC_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The aggregator's `ExportMetricsServiceResponse`, in the request's "
        "content type; `partialSuccess.rejectedDataPoints` counts the refused data points and "
        "`errorMessage` says why.",
        "content": {PROTOBUF: {}, JSON: {"example": {"partialSuccess": {}}}},
    },
    **{
        status: {"description": text, "content": {PROTOBUF: {}, JSON: {}}}
        for status, text in (
            (400, "The body does not decode (protobuf, OTLP JSON or gzip): a `google.rpc.Status`."),
            (409, "Ingestion is turned off on the aggregator (`[ingest] enabled = false`)."),
            (413, f"The body, or its gzip inflation, is larger than {PUSH_BODY_BYTES} bytes."),
            (
                415,
                "A content type other than application/x-protobuf or application/json, or "
                "an encoding other than gzip.",
            ),
            (
                429,
                "Past the per-client rate limit (`rate_limit_per_second`): retry after "
                "`Retry-After` seconds.",
            ),
            (503, "The aggregator is unreachable: retry later."),
            (504, "The aggregator did not answer in time: retry later."),
        )
    },
}
_DOC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object"}},
        },
        "description": "An OTLP `ExportMetricsServiceRequest` (optionally gzip-encoded).",
    }
}


def otlp_router(state: GatewayState) -> APIRouter:
    """`POST /v1/metrics`: OTLP/HTTP metrics for the aggregator."""
    router = APIRouter(tags=["ingest"])

    @router.post(
        PATH,
        summary="OpenTelemetry metrics (OTLP/HTTP): protobuf or JSON, gzip",
        responses=_DOC_RESPONSES,
        response_class=Response,
        openapi_extra=_DOC_BODY,
    )
    async def export(request: Request) -> Response:
        """An OTLP exporter's metrics: each service becomes a row, other metrics series.

        What maps to what (duration histograms to a row's events, errors and latency; gauges,
        sums and other histograms to pushed series) is the aggregator's OTLP mapping table.
        """
        content_type = content_type_of(request)
        try:
            if content_type is None:
                shown = request.headers.get("content-type", "")[:80]
                raise OtlpHttpError(
                    415,
                    f"Content-Type {shown!r} is not {PROTOBUF} or {JSON}",
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
            message = parse(await read_body(request), content_type)
            answer = await forward(state, message)
        except OtlpHttpError as error:
            return _error(error, content_type or JSON)
        return Response(encode(answer, content_type), media_type=content_type)

    return router
