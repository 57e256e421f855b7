"""The I/O part of a round: call GetEventRate on every agent at once, each with its deadline.

A round issues every call back to back, each with its own timeout, on the targets' persistent
channels, and counts completions in done-callbacks: no asyncio task of ours per call, one
future per round. The round ends when the last call has ended, so a hung agent costs its own
deadline and nothing else. Answers stay bytes until the round is folded, and are parsed once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from metricsmesh.v1 import event_rate_pb2, latency_pb2

from aggregator._model import AgentFigures, CallResult, Health, Outcome, TargetKey
from aggregator._targets import Target, Targets
from mesh_common import latency
from mesh_common.bounded import quote
from mesh_common.clocks import ReadClock
from mesh_common.errors import MeshError
from mesh_common.tls import connection_failure
from mesh_common.wire_time import to_seconds

_REQUEST = event_rate_pb2.GetEventRateRequest().SerializeToString()
_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_DEADLINE_SLACK_SECONDS = 0.002
"""How long after the deadline a round stops waiting for calls that have not ended (gRPC's
own deadline normally ends them first; this bounds the round when its report is late)."""

Call = grpc.aio.UnaryUnaryCall[bytes, bytes]


@dataclass(slots=True)
class _Pending:
    """One call of a round: the target, the call, when it started and when it ended."""

    target: Target
    call: Call
    started_at: float
    ended_at: float = 0.0


class FanOut:
    """Runs one round's calls over a set of targets, each with the same deadline."""

    def __init__(self, *, deadline: float, monotonic: ReadClock) -> None:
        self.deadline = deadline
        self._monotonic = monotonic

    async def collect(self, targets: Targets) -> dict[TargetKey, Outcome]:
        """Call every target that is not backing off; return each one's outcome by its key.

        Returns once every call has ended (answered, failed or hit its deadline); never
        raises for a failed call. A target that is backing off gets a SKIPPED outcome.
        """
        loop = asyncio.get_running_loop()
        monotonic = self._monotonic
        deadline = self.deadline
        done = loop.create_future()
        now = monotonic()
        outcomes: dict[TargetKey, Outcome] = {}
        pending: list[_Pending] = []
        health_waits = []
        remaining = 0

        def finished(item: _Pending) -> None:
            nonlocal remaining
            item.ended_at = monotonic()
            remaining -= 1
            if remaining == 0 and not done.done():
                done.set_result(None)

        for target in targets:
            reason = target.skip_reason(now)
            if reason is not None:
                outcomes[target.key] = Outcome(
                    CallResult.SKIPPED, target.watch.health, None, error=reason
                )
                continue
            if not target.watch.known:
                health_waits.append(asyncio.ensure_future(target.watch.wait_known()))
            item = _Pending(target, target.get_event_rate(_REQUEST, timeout=deadline), monotonic())
            pending.append(item)
            remaining += 1
            item.call.add_done_callback(lambda _call, item=item: finished(item))  # type: ignore[misc]
        started = monotonic()
        try:
            if pending:
                cutoff = loop.call_later(deadline + _DEADLINE_SLACK_SECONDS, _resolve, done)
                try:
                    await done
                finally:
                    cutoff.cancel()
            if health_waits:
                await asyncio.wait(health_waits, timeout=max(0.0, started + deadline - monotonic()))
        except asyncio.CancelledError:  # the round is cancelled (shutdown): end its calls too
            for item in pending:
                item.call.cancel()
            raise
        finally:
            for wait in health_waits:
                wait.cancel()
        for item in pending:
            outcomes[item.target.key] = await self._outcome(item)
        return outcomes

    async def _outcome(self, item: _Pending) -> Outcome:
        watch = item.target.watch
        call = item.call
        if not call.done():  # the round's cutoff came first: the call missed its deadline
            call.cancel()
            return Outcome(
                CallResult.DEADLINE,
                watch.health,
                self.deadline,
                error=f"DEADLINE_EXCEEDED: no answer within {self.deadline:g} s",
            )
        latency = item.ended_at - item.started_at
        try:
            data: Any = await call  # already done: returns at once
        except grpc.aio.AioRpcError as error:
            return _failure(error, latency, watch.health, plaintext=item.target.plaintext)
        except asyncio.CancelledError:  # the call (not this task) was cancelled: channel closed
            return Outcome(CallResult.UNREACHABLE, watch.health, latency, error="CANCELLED")
        health = watch.health
        if health is Health.UNREACHABLE:
            watch.reconnect_now()
        try:
            figures = parse_figures(data)
        except DecodeError as error:
            return Outcome(CallResult.ERROR, health, latency, error=f"undecodable answer: {error}")
        except MeshError as error:
            return Outcome(CallResult.ERROR, health, latency, error=f"unusable answer: {error}")
        return Outcome(CallResult.OK, health, latency, figures=figures, received_at=item.ended_at)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _failure(
    error: grpc.aio.AioRpcError, latency: float, health: Health, *, plaintext: bool
) -> Outcome:
    code, details = error.code(), error.details() or ""
    why = connection_failure(details, plaintext=plaintext)
    text = why or (f"{code.name}: {details}" if details else code.name)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Outcome(CallResult.DEADLINE, health, latency, error=text)
    if code in _UNREACHABLE_CODES:
        return Outcome(CallResult.UNREACHABLE, health, latency, error=text)
    return Outcome(CallResult.ERROR, health, latency, error=text)


def parse_figures(data: bytes) -> AgentFigures:
    """The figures of one serialized GetEventRate answer.

    Raises DecodeError when it is garbage, MeshError when a latency histogram is not of the
    mesh's scheme (`check_histograms`).
    """
    response = event_rate_pb2.GetEventRateResponse.FromString(data)
    check_histograms(response)
    return AgentFigures(
        service_name=response.service_name,
        events_per_second=response.events_per_second,
        events_per_hour=response.events_per_hour,
        total_events=response.total_events,
        window_events=response.window_events,
        uptime_seconds=to_seconds(response.uptime),
        window_errors=response.window_errors,
        total_errors=response.total_errors,
        latency=(
            latency.from_proto(response.latency.histogram) if response.HasField("latency") else None
        ),
        answer=data,
    )


def check_histograms(response: event_rate_pb2.GetEventRateResponse) -> None:
    """Check every latency histogram of an answer (the service's and each kind's) at the edge.

    Raises MeshError naming the histogram and its problem, so one odd agent gets a row in
    error instead of breaking every later reader (the fleet's merge, the gateway's /metrics).
    """
    if response.HasField("latency"):
        _check(response.latency.histogram, "the service's latency")
    for kind in response.kinds:
        if kind.HasField("latency"):
            _check(kind.latency.histogram, f"the latency of kind {quote(kind.kind)}")
        if kind.HasField("latency_since_start"):
            _check(kind.latency_since_start, f"the latency_since_start of kind {quote(kind.kind)}")


def _check(histogram: latency_pb2.LatencyHistogram, what: str) -> None:
    try:
        latency.check_proto(histogram)
    except MeshError as error:
        raise MeshError(f"{what}: {error}") from None
