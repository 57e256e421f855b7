"""The gateway's ingestion calls to the aggregator: Ingest, ListPushed, GetIngestStats.

Every ingestion surface of the gateway (seed 003's ingest and batch, seed 004's events, the
pushed series on `/metrics`, `latest`) asks the aggregator's one ingestion path over gRPC, on
the alert hub's channel (the gateway's one unary channel), with a deadline. A failed call
raises `IngestCallError` with the HTTP status that answers it: INVALID_ARGUMENT (a batch over
`max_batch`) 422, UNAUTHENTICATED 401, PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429,
FAILED_PRECONDITION (`[ingest] enabled = false`) and UNAVAILABLE 503, DEADLINE_EXCEEDED 504,
anything else 502; the detail says which aggregator and why, in words.
"""

from __future__ import annotations

from typing import Any

import grpc

from gateway._errors import GatewayError, IngestCallError
from gateway._state import GatewayState

CALL_TIMEOUT_SECONDS = 10.0
"""Deadline of an ingestion call."""
_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

Metadata = tuple[tuple[str, str], ...]


async def call_ingest(
    state: GatewayState, method: str, request: Any, metadata: Metadata = ()
) -> Any:
    """`method`'s response to `request`; IngestCallError when the call fails."""
    try:
        stub = state.alerts.stub
        return await getattr(stub, method)(request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata)
    except GatewayError as error:  # the channel is not open (not started)
        raise IngestCallError(503, str(error)) from None
    except grpc.aio.AioRpcError as error:
        raise failure(state, error) from None


def failure(state: GatewayState, error: grpc.aio.AioRpcError) -> IngestCallError:
    """The HTTP answer to a failed ingestion call."""
    code = error.code()
    details = error.details() or ""
    where = f"the aggregator at {state.settings.aggregator}"
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"{where} is unreachable ({details})"
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        details = f"{where} has no ingestion ({details})"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"{where} did not answer within {CALL_TIMEOUT_SECONDS:g} s ({details})"
    elif code not in _STATUS:
        details = f"{where} answered {code.name}: {details}"
    return IngestCallError(_STATUS.get(code, 502), details)
