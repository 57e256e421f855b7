"""The client half of `[auth]`: every call on a channel carries `authorization: Bearer TOKEN`.

    channel = open_channel(target, interceptors=bearer_interceptors(auth.client_token))

A call that already carries an `authorization` entry (an alert write forwarding the REST
caller's token) keeps its own. No token: no interceptor, and calls go out as before.
grpc.aio files an interceptor under the first call kind it implements, so there is one
class per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

AUTHORIZATION = "authorization"
"""The metadata key of the bearer token (gRPC keys are lower-case)."""


class _Bearer:
    def __init__(self, token: str) -> None:
        self._value = f"Bearer {token}"

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if not metadata.get_all(AUTHORIZATION):
            metadata.add(AUTHORIZATION, self._value)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class UnaryUnaryBearer(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the bearer token to unary calls."""

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        """The call, with the token."""
        return await continuation(self._details(client_call_details), request)


class UnaryStreamBearer(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    """Adds the bearer token to server-streaming calls."""

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        """The call, with the token."""
        return await continuation(self._details(client_call_details), request)


class StreamUnaryBearer(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    """Adds the bearer token to client-streaming calls."""

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        """The call, with the token."""
        return await continuation(self._details(client_call_details), request_iterator)


class StreamStreamBearer(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    """Adds the bearer token to bidirectional calls."""

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        """The call, with the token."""
        return await continuation(self._details(client_call_details), request_iterator)


def bearer_interceptors(token: str) -> tuple[grpc.aio.ClientInterceptor, ...]:
    """The interceptors of a channel that sends `token` on every kind of call ('' = none)."""
    if not token:
        return ()
    kinds = (UnaryUnaryBearer, UnaryStreamBearer, StreamUnaryBearer, StreamStreamBearer)
    return tuple(kind(token) for kind in kinds)
