"""gRPC server interceptors counting the RPCs a server handles into a tracker.

server = grpc.aio.server(interceptors=[RpcCountInterceptor(tracker)])        # kind "grpc_call"
server = grpc.server(pool, interceptors=[SyncRpcCountInterceptor(tracker)])  # threaded server
RpcCountInterceptor(tracker, kind=lambda method: method)  # one kind per method, e.g.
                                                          # "/shop.v1.CartService/AddItem"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from agent._tracker import EventTracker

KindOfMethod = Callable[[str], str]
Recorder = Callable[[], None]

DEFAULT_RPC_KIND = "grpc_call"

UNCOUNTED_SERVICES: tuple[str, ...] = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "metricsmesh.v1.EventRateService",
)
"""Services not counted by default: health checks, reflection and the agent's own figures are
the mesh's plumbing (the aggregator polls them every round), not the service's work."""


class _RpcCounting:
    """What both interceptors share: the kind of each method, decided once per method."""

    def __init__(
        self,
        tracker: EventTracker,
        *,
        kind: str | KindOfMethod = DEFAULT_RPC_KIND,
        uncounted_services: Iterable[str] = UNCOUNTED_SERVICES,
    ) -> None:
        if not isinstance(kind, str) and not callable(kind):
            raise TypeError(f"kind must be a kind name or a function of the method, got {kind!r}")
        if isinstance(kind, str):
            tracker.counter(kind)  # refuse an empty kind now, not on the first call
        self._tracker = tracker
        self._kind = kind
        self._uncounted = tuple(f"/{service}/" for service in uncounted_services)
        # method -> its counter's bound record(), or None when not counted. Only methods the
        # server has a handler for get here, so a client cannot grow it with made-up names.
        # Replaced, never mutated, so threads of a sync server read it without a lock.
        self._recorders: dict[str, Recorder | None] = {}

    def _count(self, method: str) -> None:
        try:
            record = self._recorders[method]
        except KeyError:
            record = self._recorder_of(method)
        if record is not None:
            record()

    def _recorder_of(self, method: str) -> Recorder | None:
        record: Recorder | None = None
        if not method.startswith(self._uncounted):
            kind = self._kind if isinstance(self._kind, str) else self._kind(method)
            record = self._tracker.counter(kind).record
        self._recorders = {**self._recorders, method: record}
        return record


class RpcCountInterceptor(_RpcCounting, grpc.aio.ServerInterceptor):
    """Counts the RPCs a `grpc.aio` server handles into `tracker`.

    An RPC counts once, when the server has found its handler (before the handler runs,
    whether it then succeeds or fails); calls to unknown methods and to `uncounted_services`
    (health, reflection and the EventRateService by default) are not counted. `kind` is a fixed
    kind (default `"grpc_call"`) or a function of the full method name
    (`"/package.Service/Method"`), called once per method.
    """

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Find the handler, then count the call if the method is one that counts."""
        handler = await continuation(handler_call_details)
        if handler is not None:
            self._count(handler_call_details.method)
        return handler


class SyncRpcCountInterceptor(_RpcCounting, grpc.ServerInterceptor):
    """Counts the RPCs a threaded `grpc.server` handles; same rules as `RpcCountInterceptor`."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Find the handler, then count the call if the method is one that counts."""
        handler = continuation(handler_call_details)
        if handler is not None:
            self._count(handler_call_details.method)
        return handler
