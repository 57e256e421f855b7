"""AggregatorService: GetSnapshot and StreamSnapshots over the shared round loop.

Handlers validate the request (unknown service names or field paths, negative durations ->
INVALID_ARGUMENT), then only read what the loop produced: no handler ever runs a round of its
own. Responses are serialized once per snapshot, view and send instant (see `aggregator._convert`),
so the handlers are registered with a pass-through response serializer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from metricsmesh.v1 import aggregator_pb2

from aggregator._convert import RenderCache, ResponseKind, View
from aggregator._errors import AggregatorStateError, FilterError, TooManySubscribers
from aggregator._loop import RoundLoop
from aggregator._model import SnapshotData
from mesh_common.wire_time import to_seconds

_LOG = logging.getLogger(__name__)

SERVICE_NAME = aggregator_pb2.DESCRIPTOR.services_by_name["AggregatorService"].full_name
"""The fully-qualified service name, "metricsmesh.v1.AggregatorService"."""

SHUTDOWN_MESSAGE = "aggregator shutting down"

Context = grpc.aio.ServicerContext[Any, Any]


class AggregatorServicer:
    """The handlers of AggregatorService, reading from one `RoundLoop`."""

    def __init__(self, loop: RoundLoop) -> None:
        self._loop = loop
        self._cache = RenderCache()

    def register(self, server: grpc.aio.Server) -> None:
        """Add the service's handlers to `server`."""
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "GetSnapshot": grpc.unary_unary_rpc_method_handler(
                self.get_snapshot,
                request_deserializer=aggregator_pb2.GetSnapshotRequest.FromString,
                response_serializer=_passthrough,
            ),
            "StreamSnapshots": grpc.unary_stream_rpc_method_handler(
                self.stream_snapshots,
                request_deserializer=aggregator_pb2.StreamSnapshotsRequest.FromString,
                response_serializer=_passthrough,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )

    async def get_snapshot(
        self, request: aggregator_pb2.GetSnapshotRequest, context: Context
    ) -> bytes:
        """The latest snapshot (fresher than max_age), filtered; serialized response."""
        view = await self._view(request.filter, context)
        max_age = None
        if request.HasField("max_age"):
            max_age = await _seconds("max_age", request.max_age, context)
        try:
            snapshot = await self._loop.snapshot(max_age)
        except AggregatorStateError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
        return self._render(view, snapshot, "get")

    async def stream_snapshots(
        self, request: aggregator_pb2.StreamSnapshotsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """Replay (if asked) then live snapshots; ends with UNAVAILABLE on shutdown."""
        view = await self._view(request.filter, context)
        min_interval = 0.0
        if request.HasField("min_interval"):
            min_interval = await _seconds("min_interval", request.min_interval, context)
        loop = self._loop
        try:
            subscription = loop.subscribe(min_interval)
        except TooManySubscribers as error:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except AggregatorStateError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
        try:
            resume = request.WhichOneof("resume")
            if resume == "after_sequence":
                first = loop.history_after(request.after_sequence)
            elif resume == "last_count":
                first = loop.history_last(request.last_count)
            else:
                first = [] if loop.latest is None else [loop.latest]
            last_sequence = 0
            for snapshot in first:
                yield self._render(view, snapshot, "replay")
                last_sequence = snapshot.sequence
            if first:
                subscription.mark_sent()
            while True:
                live = await subscription.next()
                if live is None:
                    break
                if live.sequence <= last_sequence:
                    continue
                last_sequence = live.sequence
                yield self._render(view, live, "stream")
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(SHUTDOWN_MESSAGE)
        finally:
            loop.unsubscribe(subscription)

    def _render(self, view: View, snapshot: SnapshotData, kind: ResponseKind) -> bytes:
        return view.render(snapshot, self._loop.clocks.monotonic(), self._cache, kind)

    async def _view(self, request: aggregator_pb2.SnapshotFilter, context: Context) -> View:
        try:
            return View(self._loop.registry, request)
        except FilterError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


async def _seconds(name: str, value: Duration, context: Context) -> float:
    seconds = to_seconds(value)
    if seconds < 0:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"{name} must not be negative, got {seconds} s"
        )
    return seconds


def _passthrough(message: bytes) -> bytes:
    return message
