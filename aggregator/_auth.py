"""The aggregator's half of `[auth]`: one server interceptor for every RPC, unary or streaming.

Health and reflection stay open (load balancers and grpcurl's `list` need no token). Every
other method needs `authorization: Bearer TOKEN` in its metadata (UNAUTHENTICATED without a
valid one) and a scope (PERMISSION_DENIED without it): the writes (`WRITE_METHODS`) need
`write`, every other method `read`. Built only when `[auth]` is on (`auth_interceptors`).

The handler learns who calls through one channel: `caller_identity()`. The interceptor sets
it (a ContextVar) once the token is checked; grpc.aio finds the handler, interceptors
included, in the task that then runs the handler, and each call has a task of its own, so a
handler reads its own call's Identity and nobody else's. None without `[auth]` and for the
open methods.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from mesh_common.auth import Identity, Verifier, bearer_token
from mesh_common.auth_client import AUTHORIZATION
from mesh_common.auth_settings import AuthSettings
from mesh_common.clocks import SYSTEM_CLOCKS, Clocks
from mesh_common.errors import AuthError, ScopeError

_LOG = logging.getLogger("aggregator.auth")
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Method prefixes that need no token."""
_AGGREGATOR = "/metricsmesh.v1.AggregatorService/"
WRITE_METHODS = frozenset(
    {
        f"{_AGGREGATOR}CreateAlertRule",
        f"{_AGGREGATOR}DeleteAlertRule",
        f"{_AGGREGATOR}ResolveAlert",
        f"{_AGGREGATOR}Ingest",
        f"{_AGGREGATOR}ReloadRegistry",
        "/metricsmesh.v1.RegistrationService/Register",
        "/metricsmesh.v1.RegistrationService/Renew",
        "/metricsmesh.v1.RegistrationService/Deregister",
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    }
)
"""Methods that change state: they need the `write` scope."""

_CALLER: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "metrics_mesh_caller", default=None
)


def caller_identity() -> Identity | None:
    """The Identity of the call being handled (module docstring); None without `[auth]`."""
    return _CALLER.get()


Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]
]


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, text: str
) -> grpc.RpcMethodHandler[Any, Any]:
    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, text)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token and the scope of every call before its handler runs."""

    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The method's handler, or one that refuses with UNAUTHENTICATED / PERMISSION_DENIED."""
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        header = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTHORIZATION:
                header = value if isinstance(value, str) else value.decode("latin-1")
        try:
            identity = self._verifier.identify(bearer_token(header))
            identity.require("write" if method in WRITE_METHODS else "read")
        except ScopeError as error:
            _LOG.info("refused %s: %s", method, error)
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, str(error))
        except AuthError as error:
            _LOG.info("refused %s: %s", method, error)
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, str(error))
        _CALLER.set(identity)
        return handler


def auth_interceptors(
    settings: AuthSettings | None, *, clocks: Clocks = SYSTEM_CLOCKS
) -> tuple[grpc.aio.ServerInterceptor, ...]:
    """The interceptor of `[auth]` when it is on, else none."""
    if settings is None or not settings.enabled:
        return ()
    return (AuthInterceptor(Verifier(settings, clocks=clocks)),)
