"""The I/O part of a round: call GetEventRate on every agent at once, each with its deadline.

`FanOut` owns one persistent channel per agent (created once, at `start()`), the agents'
health watches, and turns each call's end into an `Outcome`. A hung agent costs its own
deadline and nothing else: every call runs concurrently and carries its own timeout, and the
round ends when the last call has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import grpc
from metricsmesh.v1 import event_rate_pb2, event_rate_pb2_grpc

from aggregator._health import HealthWatch
from aggregator._model import AgentFigures, CallKind, Clock, Health, KindFigures, Outcome
from aggregator.config import Registry

_REQUEST = event_rate_pb2.GetEventRateRequest()

_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    # Reconnect quickly to an agent that comes back, but not in a tight loop.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
)


class FanOut:
    """Persistent channels and health watches for every agent of a registry."""

    def __init__(self, registry: Registry, *, deadline: float, clock: Clock) -> None:
        self.registry = registry
        self.deadline = deadline
        self._clock = clock
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[event_rate_pb2_grpc.EventRateServiceAsyncStub] = []
        self._watches: list[HealthWatch] = []

    def start(self) -> None:
        """Create the channels (once) and start the health watches; needs a running loop."""
        if self._channels:
            return
        for entry in self.registry:
            channel = grpc.aio.insecure_channel(entry.target, options=CHANNEL_OPTIONS)
            self._channels.append(channel)
            self._stubs.append(event_rate_pb2_grpc.EventRateServiceStub(channel))
            watch = HealthWatch(channel, entry.name)
            watch.start()
            self._watches.append(watch)

    async def close(self) -> None:
        """Stop the watches and close the channels; a second call is harmless."""
        watches, self._watches = self._watches, []
        channels, self._channels = self._channels, []
        self._stubs = []
        await asyncio.gather(*(watch.close() for watch in watches), return_exceptions=True)
        await asyncio.gather(*(channel.close() for channel in channels), return_exceptions=True)

    async def collect(self, skip: Sequence[str | None]) -> list[Outcome]:
        """Call every agent whose `skip` entry is None; the others get a SKIPPED outcome.

        `skip[i]` is the reason text shown for a skipped agent. Returns once every call has
        ended (answered, failed or hit its deadline); never raises for a failed call.
        """
        return list(
            await asyncio.gather(*(self._one(index, reason) for index, reason in enumerate(skip)))
        )

    async def _one(self, index: int, reason: str | None) -> Outcome:
        watch = self._watches[index]
        if reason is not None:
            return Outcome(CallKind.SKIPPED, watch.health, 0.0, error=reason)
        monotonic = self._clock.monotonic
        started = monotonic()
        health_wait = None
        if not watch.known:
            health_wait = asyncio.ensure_future(asyncio.wait_for(watch.wait_known(), self.deadline))
        try:
            response = await self._stubs[index].GetEventRate(_REQUEST, timeout=self.deadline)
        except grpc.aio.AioRpcError as error:
            ended = monotonic()
            if health_wait is not None:
                health_wait.cancel()
            return _failure(error.code(), error.details() or "", ended - started, watch.health)
        received = monotonic()
        if health_wait is not None:
            with contextlib.suppress(TimeoutError):
                await health_wait
        health = watch.health
        if health is Health.UNREACHABLE:
            watch.reconnect_now()
        return Outcome(
            CallKind.OK,
            health,
            received - started,
            figures=figures_from_response(response),
            received_at=received,
        )


def _failure(code: grpc.StatusCode, details: str, latency: float, health: Health) -> Outcome:
    text = f"{code.name}: {details}" if details else code.name
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Outcome(CallKind.DEADLINE, health, latency, error=text)
    if code in _UNREACHABLE_CODES:
        return Outcome(CallKind.UNREACHABLE, health, latency, error=text)
    return Outcome(CallKind.ERROR, health, latency, error=text)


def figures_from_response(response: event_rate_pb2.GetEventRateResponse) -> AgentFigures:
    """The plain values of one GetEventRate answer."""
    return AgentFigures(
        service_name=response.service_name,
        events_per_second=response.events_per_second,
        events_per_hour=response.events_per_hour,
        total_events=response.total_events,
        window_events=response.window_events,
        uptime_seconds=response.uptime.ToNanoseconds() / 1e9,
        last_event_time=(
            response.last_event_time.ToNanoseconds() / 1e9
            if response.HasField("last_event_time")
            else None
        ),
        read_time=(
            response.read_time.ToNanoseconds() / 1e9 if response.HasField("read_time") else None
        ),
        kinds=tuple(
            KindFigures(
                kind=kind.kind,
                events_per_second=kind.events_per_second,
                total_events=kind.total_events,
                window_events=kind.window_events,
                last_event_time=(
                    kind.last_event_time.ToNanoseconds() / 1e9
                    if kind.HasField("last_event_time")
                    else None
                ),
            )
            for kind in response.kinds
        ),
    )
