"""The I/O part of a round: call GetEventRate on every agent at once, each with its deadline.

`FanOut` owns one persistent channel per agent (created once, at `start()`) and the agents'
health watches. A round issues every call back to back, each with its own timeout, and
counts completions in done-callbacks: no asyncio task of ours per call, one future per round.
The round ends when the last call has ended, so a hung agent costs its own deadline and
nothing else. Answers stay bytes until the round is folded, and are parsed once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from metricsmesh.v1 import event_rate_pb2

from aggregator._health import HealthWatch
from aggregator._model import AgentFigures, CallKind, Clock, Health, Outcome
from aggregator.config import Registry

_LOG = logging.getLogger(__name__)

GET_EVENT_RATE = "/metricsmesh.v1.EventRateService/GetEventRate"
_REQUEST = event_rate_pb2.GetEventRateRequest().SerializeToString()
_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_DEADLINE_SLACK_SECONDS = 0.002
"""How long after the deadline a round stops waiting for calls that have not ended (gRPC's
own deadline normally ends them first; this bounds the round when its report is late)."""

CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    # Reconnect quickly to an agent that comes back, but not in a tight loop.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
)

Call = grpc.aio.UnaryUnaryCall[bytes, bytes]


class FanOut:
    """Persistent channels and health watches for every agent of a registry."""

    def __init__(self, registry: Registry, *, deadline: float, clock: Clock) -> None:
        self.registry = registry
        self.deadline = deadline
        self._clock = clock
        self._channels: list[grpc.aio.Channel] = []
        self._methods: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = []
        self._watches: list[HealthWatch] = []
        self._revivals_seen: list[int] = []

    def start(self) -> None:
        """Create the channels (once) and start the health watches; needs a running loop."""
        if self._channels:
            return
        for entry in self.registry:
            channel = grpc.aio.insecure_channel(entry.target, options=CHANNEL_OPTIONS)
            self._channels.append(channel)
            self._methods.append(channel.unary_unary(GET_EVENT_RATE))
            watch = HealthWatch(channel, entry.name)
            watch.start()
            self._watches.append(watch)
            self._revivals_seen.append(0)

    async def close(self) -> None:
        """Stop the watches and close the channels; a second call is harmless."""
        watches, self._watches = self._watches, []
        channels, self._channels = self._channels, []
        self._methods = []
        await asyncio.gather(*(watch.close() for watch in watches), return_exceptions=True)
        await asyncio.gather(*(channel.close() for channel in channels), return_exceptions=True)

    async def collect(self, skip: Sequence[str | None]) -> list[Outcome]:
        """Call every agent whose `skip` entry is None; the others get a SKIPPED outcome.

        `skip[i]` is the reason text shown for a skipped agent; an agent whose health stream
        answered again since the last round is called anyway (it is back: its backoff ends).
        Returns once every call has ended (answered, failed or hit its deadline); never raises
        for a failed call.
        """
        loop = asyncio.get_running_loop()
        monotonic = self._clock.monotonic
        deadline = self.deadline
        count = len(skip)
        calls: list[Call | None] = [None] * count
        starts = [0.0] * count
        ends = [0.0] * count
        done = loop.create_future()
        pending = 0

        def finished(index: int) -> None:
            nonlocal pending
            ends[index] = monotonic()
            pending -= 1
            if pending == 0 and not done.done():
                done.set_result(None)

        def on_done(index: int) -> Callable[[object], None]:
            return lambda _call: finished(index)

        health_waits = []
        revivals_seen = self._revivals_seen
        skip = list(skip)
        for index, method in enumerate(self._methods):
            watch = self._watches[index]
            if watch.revivals != revivals_seen[index]:
                # The agent's health stream is back: end its backoff now, not at the next retry.
                revivals_seen[index] = watch.revivals
                skip[index] = None
            if skip[index] is not None:
                continue
            if not watch.known:
                health_waits.append(asyncio.ensure_future(watch.wait_known()))
            starts[index] = monotonic()
            call = method(_REQUEST, timeout=deadline)
            calls[index] = call
            pending += 1
            call.add_done_callback(on_done(index))
        started = monotonic()
        if pending:
            cutoff = loop.call_later(deadline + _DEADLINE_SLACK_SECONDS, _resolve, done)
            try:
                await done
            finally:
                cutoff.cancel()
        if health_waits:
            await asyncio.wait(health_waits, timeout=max(0.0, started + deadline - monotonic()))
            for wait in health_waits:
                wait.cancel()
        return [
            await self._outcome(index, calls[index], skip[index], starts[index], ends[index])
            for index in range(count)
        ]

    async def _outcome(
        self, index: int, call: Call | None, reason: str | None, start: float, end: float
    ) -> Outcome:
        watch = self._watches[index]
        if call is None:
            return Outcome(CallKind.SKIPPED, watch.health, 0.0, error=reason or "not called")
        if not call.done():  # the round's cutoff came first: the call missed its deadline
            call.cancel()
            return Outcome(
                CallKind.DEADLINE,
                watch.health,
                self.deadline,
                error=f"DEADLINE_EXCEEDED: no answer within {self.deadline:g} s",
            )
        try:
            data: Any = await call  # already done: returns at once
        except grpc.aio.AioRpcError as error:
            return _failure(error.code(), error.details() or "", end - start, watch.health)
        except asyncio.CancelledError:  # the call (not this task) was cancelled: channel closed
            return Outcome(CallKind.UNREACHABLE, watch.health, end - start, error="CANCELLED")
        health = watch.health
        if health is Health.UNREACHABLE:
            watch.reconnect_now()
        try:
            figures = parse_figures(data)
        except DecodeError as error:
            return Outcome(
                CallKind.ERROR, health, end - start, error=f"undecodable answer: {error}"
            )
        return Outcome(CallKind.OK, health, end - start, figures=figures, received_at=end)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _failure(code: grpc.StatusCode, details: str, latency: float, health: Health) -> Outcome:
    text = f"{code.name}: {details}" if details else code.name
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Outcome(CallKind.DEADLINE, health, latency, error=text)
    if code in _UNREACHABLE_CODES:
        return Outcome(CallKind.UNREACHABLE, health, latency, error=text)
    return Outcome(CallKind.ERROR, health, latency, error=text)


def parse_figures(data: bytes) -> AgentFigures:
    """The figures of one serialized GetEventRate answer; DecodeError when it is garbage."""
    response = event_rate_pb2.GetEventRateResponse.FromString(data)
    uptime = response.uptime
    return AgentFigures(
        service_name=response.service_name,
        events_per_second=response.events_per_second,
        events_per_hour=response.events_per_hour,
        total_events=response.total_events,
        window_events=response.window_events,
        uptime_seconds=uptime.seconds + uptime.nanos * 1e-9,
        answer=data,
    )
