"""AggregatorService: GetSnapshot and StreamSnapshots over the shared round loop.

Handlers validate the request (bytes that are no request, unknown service names or field
paths, too many or too long names, negative or huge durations -> INVALID_ARGUMENT with a short
message quoting at most ~200 characters of the input), then only read what the loop produced:
no handler ever runs a round of its own. Responses are serialized once per snapshot, projection and
send instant (see `aggregator._convert`), so these methods return bytes sent as they are.

Streams: the gateway (a token with the `gateway` scope, a `trusted_clients` certificate, or
on an open mesh a `trusted_peers` host: `aggregator._callers`) may take every slot; other
callers leave `reserved_subscribers` free and hold at most `max_streams_per_peer` each. A resume
point names (after_epoch, after_sequence); when snapshots were missed (another lifetime, or
older than the history) the first message says so with `gap` (and `missed` when known).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from metricsmesh.v1 import aggregator_pb2

from aggregator._callers import CallerRules
from aggregator._convert import Projection, RenderCache, ResponseType, WholeSnapshots
from aggregator._errors import AggregatorStateError, TooManySubscribers
from aggregator._loop import RoundLoop
from aggregator._model import SnapshotData
from mesh_common.bounded import quote
from mesh_common.errors import FilterError
from mesh_common.grpc_input import Implementation
from mesh_common.wire_time import to_seconds

_LOG = logging.getLogger(__name__)

SERVICE = aggregator_pb2.DESCRIPTOR.services_by_name["AggregatorService"]
"""The contract's AggregatorService (its methods are served from this descriptor)."""
SERVICE_NAME = SERVICE.full_name
"""The fully-qualified service name, "metricsmesh.v1.AggregatorService"."""

SHUTDOWN_MESSAGE = "aggregator shutting down"

MAX_FILTER_ENTRIES = 1024
"""The most service names, service types or read_mask paths one filter may list."""
MAX_NAME_LENGTH = 256
"""The longest service name, type or read_mask path a filter may carry."""
MAX_DURATION_SECONDS = 86_400.0
"""The longest max_age or min_interval a request may ask for."""

Context = grpc.aio.ServicerContext[Any, Any]


class AggregatorServicer:
    """The handlers of AggregatorService, reading from one `RoundLoop`."""

    def __init__(
        self,
        loop: RoundLoop,
        whole: WholeSnapshots | None = None,
        callers: CallerRules | None = None,
    ) -> None:
        self._loop = loop
        self._cache = RenderCache(whole=whole)
        self._callers = callers or CallerRules(loop.settings, identities=False)

    def implementations(self) -> dict[str, Implementation]:
        """The snapshot methods of AggregatorService by .proto name (responses pre-serialized)."""
        return {"GetSnapshot": self.get_snapshot, "StreamSnapshots": self.stream_snapshots}

    async def get_snapshot(
        self, request: aggregator_pb2.GetSnapshotRequest, context: Context
    ) -> bytes:
        """The latest snapshot (fresher than max_age), filtered; serialized response."""
        projection = await self._projection(request.filter, context)
        max_age = None
        if request.HasField("max_age"):
            max_age = await _seconds("max_age", request.max_age, context)
        try:
            snapshot = await self._loop.snapshot(max_age)
        except AggregatorStateError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
        return self._render(projection, snapshot, "get")

    async def stream_snapshots(
        self, request: aggregator_pb2.StreamSnapshotsRequest, context: Context
    ) -> None:
        """Replay (if asked) then live snapshots; ends with UNAVAILABLE on shutdown.

        It writes each response itself (`context.write`) rather than yielding it: one
        async generator less per message on the path every subscriber takes each round
        (bench `python -m bench.bench_aggregator subscribers`).
        """
        projection = await self._projection(request.filter, context)
        min_interval = 0.0
        if request.HasField("min_interval"):
            min_interval = await _seconds("min_interval", request.min_interval, context)
        loop = self._loop
        try:
            subscription = loop.subscribe(min_interval, self._callers.caller(context))
        except TooManySubscribers as error:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except AggregatorStateError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
        try:
            last_sequence, gap = await self._replay(request, projection, context)
            if last_sequence:
                subscription.mark_sent()
            write = context.write
            while (live := await subscription.next()) is not None:
                if live.sequence > last_sequence:
                    last_sequence = live.sequence
                    await write(self._render(projection, live, "stream") + gap)
                    gap = b""
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(SHUTDOWN_MESSAGE)
        finally:
            loop.unsubscribe(subscription)

    async def _replay(
        self,
        request: aggregator_pb2.StreamSnapshotsRequest,
        projection: Projection,
        context: Context,
    ) -> tuple[int, bytes]:
        """Send what a stream gets first; returns (last sequence sent or 0, gap still to send).

        First come the snapshots after the resume point, the last snapshots asked for, or
        else the latest. The first message says `gap` when snapshots were missed; with
        nothing to replay, the first live message carries it.
        """
        loop = self._loop
        resume = request.WhichOneof("resume")
        gap = b""
        if resume == "after_sequence":
            first, missed_any, missed = loop.resume(request.after_epoch, request.after_sequence)
            if missed_any:
                gap = aggregator_pb2.StreamSnapshotsResponse(
                    gap=True, missed=missed
                ).SerializeToString()
        elif resume == "last_count":
            first = loop.history_last(request.last_count)
        else:
            first = [] if loop.latest is None else [loop.latest]
        last_sequence = 0
        for snapshot in first:
            # Fields appended to a serialized message are set in it (protobuf encoding).
            await context.write(self._render(projection, snapshot, "replay") + gap)
            gap = b""
            last_sequence = snapshot.sequence
        return last_sequence, gap

    def _render(
        self, projection: Projection, snapshot: SnapshotData, response_type: ResponseType
    ) -> bytes:
        return projection.render(
            snapshot, self._loop.clocks.monotonic(), self._cache, response_type
        )

    async def _projection(
        self, request: aggregator_pb2.SnapshotFilter, context: Context
    ) -> Projection:
        problem = filter_problem(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            return Projection(self._loop.registry, request)
        except FilterError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


def filter_problem(request: aggregator_pb2.SnapshotFilter) -> str | None:
    """Why a filter is refused before it is even compiled (too big), or None."""
    lists = {
        "filter.service_names": request.service_names,
        "filter.service_types": request.service_types,
        "filter.read_mask.paths": request.read_mask.paths,
    }
    for name, values in lists.items():
        if len(values) > MAX_FILTER_ENTRIES:
            return f"{name}: {len(values)} entries, the limit is {MAX_FILTER_ENTRIES}"
        for value in values:
            if len(value) > MAX_NAME_LENGTH:
                return f"{name}: {quote(value, 40)} is longer than {MAX_NAME_LENGTH} characters"
    return None


async def _seconds(name: str, value: Duration, context: Context) -> float:
    seconds = to_seconds(value)
    if not 0 <= seconds <= MAX_DURATION_SECONDS:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{name} must not be negative, got {seconds:g} s"
            if seconds < 0
            else f"{name} must be at most {MAX_DURATION_SECONDS:g} s, got {seconds:g} s",
        )
    return seconds
