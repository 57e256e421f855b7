"""The gateway's history calls to the aggregator (QueryRange, QueryInstant, QueryLatest, ...).

Every history endpoint asks the aggregator over gRPC, on the alert hub's channel (the
gateway's one unary channel), with a deadline longer than the aggregator's own query timeout
so that its DEADLINE_EXCEEDED, which names the timeout, is what the client reads. A failed
call raises `HistoryCallError` with the status code's name, its message and the field its
`google.rpc.BadRequest` names (`gateway._alert_routes.violated_field`); an unreachable
aggregator or one without history says so in words.
"""

from __future__ import annotations

from typing import Any

import grpc

from gateway._alert_routes import violated_field
from gateway._errors import GatewayError, HistoryCallError
from gateway._state import GatewayState

CALL_TIMEOUT_SECONDS = 30.0
"""Deadline of a history call: longer than the aggregator's query timeout (10 s by default)."""


async def call_history(state: GatewayState, method: str, request: Any) -> Any:
    """`method`'s response to `request`; HistoryCallError when the call fails."""
    try:
        stub = state.alerts.stub
        return await getattr(stub, method)(request, timeout=CALL_TIMEOUT_SECONDS)
    except GatewayError as error:  # the channel is not open (not started)
        raise HistoryCallError("UNAVAILABLE", str(error)) from None
    except grpc.aio.AioRpcError as error:
        raise _failure(state, error) from None


def _failure(state: GatewayState, error: grpc.aio.AioRpcError) -> HistoryCallError:
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"the aggregator at {state.settings.aggregator} is unreachable ({details})"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and not details.startswith("the query"):
        details = f"the aggregator did not answer within {CALL_TIMEOUT_SECONDS:g} s ({details})"
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        details = f"the aggregator at {state.settings.aggregator} serves no history ({details})"
    field = violated_field(error) if code == grpc.StatusCode.INVALID_ARGUMENT else None
    return HistoryCallError(code.name if code is not None else "UNKNOWN", details, field)
