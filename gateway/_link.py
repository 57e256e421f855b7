"""One long-lived subscription to the aggregator: its channel, task, state and reconnect delays.

The gateway holds two, the snapshots (`SnapshotHub`) and the alerts (`AlertHub`). Both open a
channel on `start()`, run their subscription loop in a task, reconnect with `backoff`, report
where they stand (`state`, `error`, `state_since`, `connects`), log each state change once,
and close everything on `stop()`. A hub implements `_run()` and `_notify()`.

With TLS, a link checks every RENEWAL_CHECK_SECONDS whether the `[tls]` files were rotated
(`mesh_common.tls_credentials.Rotation`, as the aggregator does for its agents) and then opens
a new channel with them and restarts its subscription on it (a hub resumes where it was, its
state stays `connected` when the new channel connects); calls in flight on the old channel
get RENEWAL_GRACE_SECONDS to end.
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
from mesh_common.tls_credentials import Rotation
from mesh_common.transport import open_channel

RENEWAL_CHECK_SECONDS = 2.0
"""How often a link with TLS looks for rotated `[tls]` files (three `stat` calls)."""
RENEWAL_GRACE_SECONDS = 5.0
"""How long calls in flight on a link's old channel may go on after a renewal."""


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
        self._retiring: grpc.aio.Channel | None = None
        """The channel a renewal replaced, until its calls in flight have ended."""
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: asyncio.Task[None] | None = None
        self.interceptors: tuple[grpc.aio.ClientInterceptor, ...] = ()
        """What every call on the channel goes through (`[auth] client_token`); set before start."""

    def start(self) -> None:
        """Open the channel and start the subscription task (in the running loop).

        With TLS, also the task that renews the channel when the `[tls]` files are rotated.
        """
        if self._tasks:
            return
        self._channel = self._open_channel()
        self._set_state(UpstreamState.CONNECTING, f"connecting to the aggregator at {self.target}")
        self._subscription = self._spawn(self._run(), f"{self._label} {self.target}")
        if self.tls is not None and self.tls.enabled:
            rotation = Rotation(self.tls, keeping="keeping the current channel")
            self._spawn(self._follow_rotation(rotation), f"{self._label} [tls] rotation")

    async def stop(self) -> None:
        """Cancel the subscription (and the hub's other tasks), close the channel; idempotent."""
        tasks, self._tasks, self._subscription = self._tasks, [], None
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for channel in (self._channel, self._retiring):
            if channel is not None:
                await channel.close()
        self._channel = self._retiring = None
        self._set_state(UpstreamState.STOPPED, "the gateway is shutting down")

    def _open_channel(self) -> grpc.aio.Channel:
        return open_channel(self.target, tls=self.tls, interceptors=self.interceptors)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run `work` as one of the hub's tasks (cancelled by `stop()`)."""
        task = asyncio.create_task(work, name=name)
        self._tasks.append(task)
        return task

    async def _follow_rotation(self, rotation: Rotation) -> None:
        while True:
            await asyncio.sleep(RENEWAL_CHECK_SECONDS)
            try:
                if rotation.check():
                    await self._renew_channel()
            except Exception:  # keep following whatever happens; the old channel stays
                self._logger.exception(
                    "%s %s: renewing the channel failed", self._label, self.target
                )

    async def _renew_channel(self) -> None:
        """Open a new channel (the rotated files) and restart the subscription on it."""
        fresh = self._open_channel()
        self._logger.info(
            "%s %s: [tls] files changed: a new channel with them", self._label, self.target
        )
        self._retiring, self._channel = self._channel, fresh
        old = self._subscription
        if old is not None:
            old.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old
            self._tasks.remove(old)
        self._subscription = self._spawn(self._run(), f"{self._label} {self.target}")
        if self._retiring is not None:
            await self._retiring.close(RENEWAL_GRACE_SECONDS)
            self._retiring = None

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
