"""A server interceptor that makes the agent's GetEventRate fail while a condition holds.

The demo uses it for its "error" service: the agent is real and answers, but with an
INTERNAL status, which the aggregator reports as SERVICE_STATUS_ERROR with the message.
Health and reflection are never touched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

GET_EVENT_RATE_SUFFIX = "/GetEventRate"


class FaultInterceptor(grpc.aio.ServerInterceptor):
    """Aborts GetEventRate with `code` and `message` whenever `failing()` is true."""

    def __init__(
        self,
        failing: Callable[[], bool],
        message: str,
        code: grpc.StatusCode = grpc.StatusCode.INTERNAL,
    ) -> None:
        self._failing = failing
        self._message = message
        self._code = code
        self._handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(
            self._abort
        )

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Route GetEventRate to the failing handler while the fault is on."""
        if handler_call_details.method.endswith(GET_EVENT_RATE_SUFFIX) and self._failing():
            return self._handler
        return await continuation(handler_call_details)

    async def _abort(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(self._code, self._message)
