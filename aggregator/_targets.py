"""What the aggregator keeps about each agent between rounds, one `Target` per agent address.

A `Target` owns the agent's persistent channel, its health watch, its backoff state and its
last outcome: a service of one agent has one, a service of several instances one per
instance (so channels, watches and backoff are per instance). `Targets` holds them by
`TargetKey` and can be given a new registry at any time between two rounds: targets that
stay keep their channel, watch and state, new ones are opened, removed ones closed, and one
whose agent address changed starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import grpc

from aggregator._health import HealthWatch, RevivalProbe
from aggregator._model import CallResult, Outcome, TargetKey, TargetState, target_key
from mesh_common.registry import Registry, ServiceEntry
from mesh_common.tls import TlsSettings
from mesh_common.tls_credentials import Rotation
from mesh_common.transport import ChannelOptions, open_channel, reconnect_options

_LOG = logging.getLogger(__name__)

GET_EVENT_RATE = "/metricsmesh.v1.EventRateService/GetEventRate"

LAPSED = (
    "not called: its registration lapsed (no renewal within [discovery] lease_seconds); "
    "it leaves the fleet after remove_after_seconds unless it renews"
)
"""Why an instance whose registration lease lapsed is not called (it shows inactive)."""


def channel_options(reconnect_max_seconds: float) -> ChannelOptions:
    """Channel options: reconnect quickly to an agent that comes back, not in a tight loop.

    The longest pause is about one round interval, so a restarted agent is found within a
    round: a TCP connection attempt, not a call, to each agent that is down.
    """
    return reconnect_options(reconnect_max_seconds)


class Target:
    """One agent: its entry, address, channel, health watch, backoff state and last outcome."""

    entry: ServiceEntry
    address: str
    """The agent's address: the entry's `target`, or one of its `instances`."""
    key: TargetKey
    """Its outcome's and state's key in a round (`aggregator._model.TargetKey`)."""
    state: TargetState
    """Consecutive failures and backoff, as the last fold left them."""
    last_outcome: Outcome | None
    """What the latest round's call produced (None before the first round)."""
    plaintext: bool
    """Whether the channel to the agent is plaintext (no `[tls]`)."""

    def __init__(
        self,
        entry: ServiceEntry,
        address: str | None = None,
        *,
        reconnect_max_seconds: float = 1.0,
        deadline: float = 0.5,
        tls: TlsSettings | None = None,
    ) -> None:
        self.entry = entry
        self.address = entry.target if address is None else address
        self.key = target_key(entry, self.address)
        self._deadline = deadline
        self.state = TargetState()
        self.last_outcome = None
        self.plaintext = tls is None or not tls.enabled
        options = channel_options(reconnect_max_seconds)
        self._channel = open_channel(self.address, options=options, tls=tls)
        self.get_event_rate: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = (
            self._channel.unary_unary(GET_EVENT_RATE)
        )
        self.watch = HealthWatch(self._channel, entry.name)
        self.probe = RevivalProbe(self._channel, entry.name, self._answered_again)
        self._revivals_seen = 0
        self._revived = False

    def start(self) -> None:
        """Start the health watch (needs a running loop)."""
        self.watch.start()

    def record(self, outcome: Outcome | None) -> None:
        """Keep this round's outcome; a call that hung or found no agent starts the probe.

        After a missed deadline only an answer that itself waited longer than the deadline
        counts (the agent was hung, not just slow to count).
        """
        self.last_outcome = outcome
        if outcome is None:
            return
        if outcome.result is CallResult.UNREACHABLE:
            self.probe.start()
        elif outcome.result is CallResult.DEADLINE:
            self.probe.start(min_wait=self._deadline)

    def skip_reason(self, now: float) -> str | None:
        """Why this round should not call the agent (lapsed, backing off), or None to call it.

        An instance whose registration lapsed is not called until it renews. An agent whose
        health stream answered again since the last round, or that answered the revival
        probe, is called at once: it is back, so its backoff ends.
        """
        if self.address in self.entry.lapsed:
            return LAPSED
        if self._revived:
            self._revived = False
            return None
        if self.watch.revivals != self._revivals_seen:
            self._revivals_seen = self.watch.revivals
            return None
        state = self.state
        if state.retry_at <= now:
            return None
        return (
            f"not called: backing off after {state.consecutive_failures} failed calls, next "
            f"attempt in {state.retry_at - now:.1f} s; last error: {state.last_error}"
        )

    def _answered_again(self) -> None:
        self._revived = True
        self.watch.reconnect_now()

    async def close(self) -> None:
        """Stop the watch and the probe and close the channel; a second call is harmless."""
        await self.watch.close()
        await self.probe.close()
        await self._channel.close()


class Targets:
    """Every agent of the current registry, by `TargetKey`, in registry order."""

    def __init__(
        self,
        registry: Registry,
        *,
        reconnect_max_seconds: float = 1.0,
        deadline: float = 0.5,
        tls: TlsSettings | None = None,
    ) -> None:
        self.registry = registry
        self._tls = tls
        self._rotation = (
            Rotation(tls, keeping="keeping the current channels")
            if tls is not None and tls.enabled
            else None
        )
        self._by_key: dict[TargetKey, Target] = {}
        self._started = False
        self._reconnect_max = reconnect_max_seconds
        self._deadline = deadline

    def __iter__(self) -> Iterator[Target]:
        by_key = self._by_key
        for entry in self.registry:
            for address in entry.addresses:
                target = by_key.get(target_key(entry, address))
                if target is not None:
                    yield target

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: TargetKey) -> Target | None:
        """The target of `key` (a service's name, or (name, address) for an instance)."""
        return self._by_key.get(key)

    def start(self) -> None:
        """Open every channel and start every watch (once); needs a running loop."""
        if self._started:
            return
        self._started = True
        for entry in self.registry:
            for address in entry.addresses:
                if target_key(entry, address) not in self._by_key:
                    self._open(entry, address)

    async def replace(self, registry: Registry) -> None:
        """Make the targets those of `registry`, keeping what stays the same.

        An agent whose key and address are unchanged keeps its channel, watch and state (its
        entry is updated); a new or moved one gets a fresh target; a removed one is closed.
        """
        closing: list[Target] = []
        kept: dict[TargetKey, Target] = {}
        for entry in registry:
            for address in entry.addresses:
                key = target_key(entry, address)
                target = self._by_key.pop(key, None)
                if target is not None and target.address == address:
                    target.entry = entry
                    kept[key] = target
                elif target is not None:
                    closing.append(target)
        closing.extend(self._by_key.values())
        self._by_key = kept
        self.registry = registry
        if self._started:
            for entry in registry:
                for address in entry.addresses:
                    if target_key(entry, address) not in kept:
                        self._open(entry, address)
        for target in closing:
            _LOG.info(
                "agent %s of %r removed or moved: closing its channel",
                target.address,
                target.entry.name,
            )
        await asyncio.gather(*(target.close() for target in closing), return_exceptions=True)

    async def renew_channels(self) -> None:
        """Open new channels to every agent when the `[tls]` files changed (rotated).

        A target keeps its state and last outcome; its old channel is closed. A set of files
        that does not fit together (half-written) is logged and the old channels kept.
        """
        if self._rotation is None or not self._started or not self._rotation.check():
            return
        _LOG.info("[tls] files changed: new channels to the %d agents", len(self._by_key))
        old = self._by_key
        self._by_key = {}
        for target in old.values():
            renewed = self._open(target.entry, target.address)
            renewed.state, renewed.last_outcome = target.state, target.last_outcome
        await asyncio.gather(*(target.close() for target in old.values()), return_exceptions=True)

    async def close(self) -> None:
        """Close every target; a second call is harmless."""
        targets, self._by_key = list(self._by_key.values()), {}
        await asyncio.gather(*(target.close() for target in targets), return_exceptions=True)

    def _open(self, entry: ServiceEntry, address: str) -> Target:
        target = Target(
            entry,
            address,
            reconnect_max_seconds=self._reconnect_max,
            deadline=self._deadline,
            tls=self._tls,
        )
        target.start()
        self._by_key[target.key] = target
        return target
