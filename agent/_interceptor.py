"""gRPC server interceptors counting and timing the RPCs a server handles into a tracker.

server = grpc.aio.server(interceptors=[RpcCountInterceptor(tracker)])        # kind "grpc_call"
server = grpc.server(pool, interceptors=[SyncRpcCountInterceptor(tracker)])  # threaded server
RpcCountInterceptor(tracker, kind=lambda method: method)  # one kind per method, e.g.
                                                          # "/shop.v1.CartService/AddItem"
RpcCountInterceptor(tracker, ok_codes={grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND})
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from agent._tracker import EventTracker
from mesh_common.clocks import ReadClock

KindOfMethod = Callable[[str], str]
Observer = Callable[..., None]
if TYPE_CHECKING:
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler

DEFAULT_RPC_KIND = "grpc_call"
DEFAULT_OK_CODES = frozenset({grpc.StatusCode.OK})

UNCOUNTED_SERVICES: tuple[str, ...] = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "metricsmesh.v1.EventRateService",
)
"""Services not counted by default: health checks, reflection and the agent's own figures are
the mesh's plumbing (the aggregator polls them every round), not the service's work."""

_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


class _RpcCounting:
    """What both interceptors share: the kind of each method, decided once per method."""

    def __init__(
        self,
        tracker: EventTracker,
        *,
        kind: str | KindOfMethod = DEFAULT_RPC_KIND,
        uncounted_services: Iterable[str] = UNCOUNTED_SERVICES,
        ok_codes: Iterable[grpc.StatusCode] = DEFAULT_OK_CODES,
    ) -> None:
        if not isinstance(kind, str) and not callable(kind):
            raise TypeError(f"kind must be a kind name or a function of the method, got {kind!r}")
        if isinstance(kind, str):
            tracker.counter(kind)  # refuse an empty kind now, not on the first call
        self._tracker = tracker
        self._clock: ReadClock = tracker.clock
        self._kind = kind
        self._ok_codes = frozenset(ok_codes)
        self._uncounted = tuple(f"/{service}/" for service in uncounted_services)
        # method -> (the server's handler, our timed one), or None when not counted. Only
        # methods the server has a handler for get here, so a client cannot grow it with
        # made-up names. Replaced, never mutated: threads of a sync server read it unlocked.
        self._handlers: dict[str, tuple[Handler, Handler] | None] = {}

    def _timed(self, method: str, handler: Handler, asynchronous: bool) -> Handler:
        try:
            known = self._handlers[method]
        except KeyError:
            known = self._wrap(method, handler, asynchronous)
        if known is None:
            return handler
        original, timed = known
        if original is not handler:
            known = self._wrap(method, handler, asynchronous)
            assert known is not None
            timed = known[1]
        return timed

    def _wrap(
        self, method: str, handler: Handler, asynchronous: bool
    ) -> tuple[Handler, Handler] | None:
        known: tuple[Handler, Handler] | None = None
        if not method.startswith(self._uncounted):
            kind = self._kind if isinstance(self._kind, str) else self._kind(method)
            observe = self._tracker.counter(kind).observe
            known = (handler, _timed_handler(handler, observe, self, asynchronous))
        self._handlers = {**self._handlers, method: known}
        return known

    def failed(self, context: Any, error: BaseException | None) -> bool:
        """Whether the RPC ended with a status that is not one of the ok codes."""
        code = context.code()
        if code is None:
            code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
        elif isinstance(code, int):  # the aio context reports the status as its number
            code = _CODE_OF_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
        return code not in self._ok_codes


_CODE_OF_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _timed_handler(
    handler: Handler, observe: Observer, counting: _RpcCounting, asynchronous: bool
) -> Handler:
    """A handler that runs `handler`'s behaviour and observes its duration and outcome."""
    clock = counting._clock
    for attribute, make in _KINDS:
        behaviour = getattr(handler, attribute)
        if behaviour is None:
            continue
        streaming = attribute.endswith("_stream")
        if asynchronous:
            timed = _async_stream(behaviour) if streaming else _async_unary(behaviour)
        else:
            timed = _sync_stream(behaviour) if streaming else _sync_unary(behaviour)
        return make(
            timed(observe, counting, clock),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class _Timed:
    """A `with` block around one RPC's handler: observes its duration and outcome at the end."""

    __slots__ = ("_clock", "_context", "_counting", "_observe", "_started")

    def __init__(
        self, observe: Observer, counting: _RpcCounting, clock: ReadClock, context: Any
    ) -> None:
        self._observe, self._counting, self._clock = observe, counting, clock
        self._context = context
        self._started = clock()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, error: BaseException | None, traceback: Any) -> None:
        failed = self._counting.failed(self._context, error)
        self._observe(self._clock() - self._started, error=failed)


Binder = Callable[[Observer, "_RpcCounting", ReadClock], Callable[..., Any]]


def _async_unary(behaviour: Callable[..., Awaitable[Any]]) -> Binder:
    def bind(observe: Observer, counting: _RpcCounting, clock: ReadClock) -> Callable[..., Any]:
        async def timed(request: Any, context: Any) -> Any:
            with _Timed(observe, counting, clock, context):
                return await behaviour(request, context)

        return timed

    return bind


def _async_stream(behaviour: Callable[..., Any]) -> Binder:
    def bind(observe: Observer, counting: _RpcCounting, clock: ReadClock) -> Callable[..., Any]:
        async def timed(request: Any, context: Any) -> AsyncIterator[Any]:
            with _Timed(observe, counting, clock, context):
                result = behaviour(request, context)
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        yield response
                else:  # a handler that writes with context.write()
                    await result

        return timed

    return bind


def _sync_unary(behaviour: Callable[..., Any]) -> Binder:
    def bind(observe: Observer, counting: _RpcCounting, clock: ReadClock) -> Callable[..., Any]:
        def timed(request: Any, context: Any) -> Any:
            with _Timed(observe, counting, clock, context):
                return behaviour(request, context)

        return timed

    return bind


def _sync_stream(behaviour: Callable[..., Iterator[Any]]) -> Binder:
    def bind(observe: Observer, counting: _RpcCounting, clock: ReadClock) -> Callable[..., Any]:
        def timed(request: Any, context: Any) -> Iterator[Any]:
            with _Timed(observe, counting, clock, context):
                yield from behaviour(request, context)

        return timed

    return bind


class RpcCountInterceptor(_RpcCounting, grpc.aio.ServerInterceptor):
    """Counts and times the RPCs a `grpc.aio` server handles into `tracker`.

    An RPC counts once, when its handler is done (a streaming one when its last message went
    out), with the time the handler took. It failed when it ended with a status code outside
    `ok_codes` (by default anything but OK: an abort, an unhandled exception, a set code).
    Calls to unknown methods and to `uncounted_services` (health, reflection and the
    EventRateService by default) are not counted. `kind` is a fixed kind (default
    `"grpc_call"`) or a function of the full method name (`"/package.Service/Method"`),
    called once per method.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Find the handler, and time it if the method is one that counts."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._timed(handler_call_details.method, handler, asynchronous=True)


class SyncRpcCountInterceptor(_RpcCounting, grpc.ServerInterceptor):
    """Counts and times the RPCs a threaded `grpc.server` handles; same rules as the aio one."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Find the handler, and time it if the method is one that counts."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._timed(handler_call_details.method, handler, asynchronous=False)
