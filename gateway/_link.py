"""One long-lived subscription to the aggregator: its channel, task, state and reconnect delays.

The gateway holds two, the snapshots (`SnapshotHub`) and the alerts (`AlertHub`). Both open a
channel on `start()`, run their subscription loop in a task, reconnect with `backoff`, report
where they stand (`state`, `error`, `state_since`, `connects`), log each state change once,
and close everything on `stop()`. A hub implements `_run()` and `_notify()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from enum import StrEnum
from typing import Any

import grpc

from mesh_common.clocks import ReadClock
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel


class UpstreamState(StrEnum):
    """Where a subscription stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


def backoff(initial: float, maximum: float, rng: Callable[[], float]) -> Iterator[float]:
    """Reconnect delays: doubling from `initial` up to `maximum`, each scaled by [0.5, 1).

    The random half spreads the reconnects of many gateways after an aggregator restart.
    """
    delay = initial
    while True:
        yield delay * (0.5 + rng() / 2)
        delay = min(delay * 2, maximum)


class UpstreamLink:
    """The shared half of a hub: `label` names it in logs and task names."""

    def __init__(
        self,
        target: str,
        label: str,
        *,
        logger: logging.Logger,
        reconnect_initial_seconds: float,
        reconnect_max_seconds: float,
        monotonic: ReadClock,
        rng: Callable[[], float],
        tls: TlsSettings | None = None,
    ) -> None:
        self.target = target
        self.tls = tls
        """How the channel to the aggregator is secured (None: plaintext)."""
        self.monotonic = monotonic
        self.state = UpstreamState.STOPPED
        self.error: str | None = f"the {label} subscription has not started"
        self.connects = 0
        """How many times the subscription was established."""
        self.state_since = monotonic()
        """Monotonic instant of the last state change."""
        self._label = label
        self._logger = logger
        self._initial = reconnect_initial_seconds
        self._max = reconnect_max_seconds
        self._rng = rng
        self._channel: grpc.aio.Channel | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.interceptors: tuple[grpc.aio.ClientInterceptor, ...] = ()
        """What every call on the channel goes through (`[auth] client_token`); set before start."""

    def start(self) -> None:
        """Open the channel and start the subscription task (in the running loop)."""
        if self._tasks:
            return
        self._channel = open_channel(self.target, tls=self.tls, interceptors=self.interceptors)
        self._spawn(self._run(), f"{self._label} {self.target}")

    async def stop(self) -> None:
        """Cancel the subscription (and the hub's other tasks), close the channel; idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        self._set_state(UpstreamState.STOPPED, "the gateway is shutting down")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` as one of the hub's tasks (cancelled by `stop()`)."""
        self._tasks.append(asyncio.create_task(work, name=name))

    def _delays(self) -> Iterator[float]:
        """A fresh sequence of reconnect delays."""
        return backoff(self._initial, self._max, self._rng)

    def _set_state(self, state: UpstreamState, error: str | None) -> None:
        changed = state is not self.state
        self.error = error
        if not changed:
            return
        previous, self.state = self.state, state
        self.state_since = self.monotonic()
        if state is UpstreamState.DISCONNECTED:
            self._logger.warning(
                "%s %s: %s -> %s: %s", self._label, self.target, previous, state, error
            )
        else:
            self._logger.info("%s %s: %s -> %s", self._label, self.target, previous, state)
        self._notify()

    async def _run(self) -> None:
        raise NotImplementedError

    def _notify(self) -> None:
        raise NotImplementedError
