"""One grpc.health.v1 Watch stream per agent, so that a round needs no health call.

The watch asks about the service's registry name. If the agent answers SERVICE_UNKNOWN for
that name (an agent that does not register its service name with health), the watch falls
back to the server as a whole ("") and keeps reporting that status; `Health.SERVICE_UNKNOWN`
is shown only when the agent knows neither. When the stream breaks (agent stopped or
restarted), the status becomes UNREACHABLE and the watch reconnects with a growing pause,
or at once when `reconnect_now()` is called (the round does so when the agent answers again).
`RevivalProbe` notices an agent that stopped answering (hung or dead) answering again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2

from aggregator._model import Health

_LOG = logging.getLogger(__name__)

_STATUS = {
    health_pb2.HealthCheckResponse.SERVING: Health.SERVING,
    health_pb2.HealthCheckResponse.NOT_SERVING: Health.NOT_SERVING,
    health_pb2.HealthCheckResponse.SERVICE_UNKNOWN: Health.SERVICE_UNKNOWN,
}

RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 5.0


class HealthWatch:
    """Keeps `health` current for one agent from a Watch stream on a persistent channel."""

    health: Health
    """The latest status; UNKNOWN until the first answer of the current stream arrives."""
    revivals: int
    """How many times a stream answered again after the agent had been unreachable."""

    def __init__(self, channel: grpc.aio.Channel, name: str) -> None:
        self.health = Health.UNKNOWN
        self.revivals = 0
        self._watch = channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        self._name = name
        self._known = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def known(self) -> bool:
        """True once the current stream has reported (or failed)."""
        return self._known.is_set()

    async def wait_known(self) -> None:
        """Return once `health` reflects an answer (or a failure) of the current stream."""
        await self._known.wait()

    def start(self) -> None:
        """Start watching in a background task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"health-watch-{self._name}"
            )

    def reconnect_now(self) -> None:
        """Skip the pause before the next reconnection attempt (the agent answers again)."""
        self._wake.set()

    async def close(self) -> None:
        """Stop watching; a second call is harmless."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        name = self._name
        failures = 0
        while True:
            try:
                call = self._watch(health_pb2.HealthCheckRequest(service=name))
                async for response in call:
                    status = _STATUS.get(response.status, Health.UNKNOWN)
                    if status is Health.SERVICE_UNKNOWN and name:
                        _LOG.info(
                            "agent of %r does not know that health name; watching its overall "
                            'health ("") instead',
                            self._name,
                        )
                        name = ""
                        call.cancel()
                        break
                    if failures:
                        self.revivals += 1
                    failures = 0
                    self._report(status)
                else:
                    raise ConnectionError("the agent ended the health Watch stream")
                continue
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, ConnectionError) as error:
                _LOG.debug("health watch of %r failed: %s", self._name, error)
            except Exception:
                _LOG.exception("health watch of %r failed", self._name)
            self._report(Health.UNREACHABLE)
            failures += 1
            self._wake.clear()
            pause = min(RECONNECT_MAX_SECONDS, RECONNECT_FIRST_SECONDS * 2.0 ** min(failures, 20))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._known.clear()

    def _report(self, status: Health) -> None:
        self.health = status
        self._known.set()


PROBE_RETRY_SECONDS = 0.1
"""Pause before a revival probe asks again after its connection broke mid-call."""
_SILENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}
)


class RevivalProbe:
    """One pending health Check on an agent that stopped answering; it ends when it answers.

    The Check waits for the channel to be ready and has no deadline: a hung (SIGSTOPped)
    agent answers it the moment it runs again, a dead one once the channel reconnects (the
    channel's own reconnect backoff, no call per round). `on_answer` is then called once, so
    the target's backoff ends and the next round calls the agent. Any answer counts, even an
    error status, unless it came sooner than `min_wait` seconds after the probe was sent: an
    agent that answers health at once but missed GetEventRate's deadline is running, only
    slow, and its backoff stands (the next failed call probes again).
    """

    def __init__(self, channel: grpc.aio.Channel, name: str, on_answer: Callable[[], None]) -> None:
        self._check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        self._name = name
        self._on_answer = on_answer
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while the probe waits for an answer."""
        return self._task is not None and not self._task.done()

    def start(self, min_wait: float = 0.0) -> None:
        """Start waiting for the agent (no-op while already waiting)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(min_wait), name=f"revival-probe-{self._name}"
            )

    async def close(self) -> None:
        """Stop waiting; a second call is harmless."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self, min_wait: float) -> None:
        sent = time.monotonic()
        while True:
            try:
                await self._check(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                if error.code() in _SILENT_CODES:
                    await asyncio.sleep(PROBE_RETRY_SECONDS)
                    continue
            if time.monotonic() - sent < min_wait:
                return  # running all along: only GetEventRate is slow
            _LOG.debug("agent of %r answers again", self._name)
            self._on_answer()
            return
