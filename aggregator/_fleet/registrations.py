"""Self-registered agents: `Registrations`, the fleet's source that RegistrationService feeds.

An agent registers one instance of a service (name, type, data source, port, and the
address the aggregator calls it at) and renews its lease (`[discovery] lease_seconds`). The
registrations of one service name are **one entry, one instance each**, in the order they
first registered; the latest registration gives the entry's type, data source and port.
Registering again (same service, same address) renews and is harmless. An address held by
another service's live registration is refused (one agent answers for one service); once
that one lapsed, the new registration takes the address over (a pod's address reused).

Time is the aggregator's injected monotonic clock. `refresh()`, which the fleet calls every
interval, finds the leases that ended: such a registration **lapses** at once (its address
joins its entry's `lapsed`: the rounds stop calling it and show it inactive) and is removed
`remove_after_seconds` after its lease ended unless it renews first. Every change calls
`on_change()`, so the fleet merges at once rather than at its next interval.

Bounds: names and addresses are checked (`registration.registration()`), and at most
`max_registrations` registrations are held, lapsed ones included: one more is refused
(`RegistrationsFull`) before anything is kept, so a flood costs nothing past the cap.

Across a restart: with a state file (`registration_state.py`), the registrations are
written when they changed (at most once a check, and at close) and read back at start.
Each live one gets a fresh lease from the start, which its agent renews within one renew
interval; a lapsed one keeps its lapse time. Without a state file, an agent's next Renew
is NOT_FOUND and it registers again, so its row is back within one renew interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aggregator._errors import RegistrationsFull, RegistrationTaken, RegistrationUnknown
from aggregator._fleet.registration import Registration
from aggregator._fleet.registration_state import RegistrationState, Saved
from aggregator._fleet.settings import DiscoverySettings
from aggregator._fleet.source import SourceKind, SourceStatus
from mesh_common.bounded import RateLimitedLog, quote, quote_list
from mesh_common.clocks import Clocks
from mesh_common.registry import ServiceEntry

_LOG = logging.getLogger("aggregator.fleet")


@dataclass(slots=True)
class _Held:
    """A registration the aggregator holds, and its lease."""

    registration: Registration
    expires_at: float
    """Monotonic instant at which the lease ends without a renewal."""
    sequence: int
    """When it was registered (or last changed), among all: the latest gives the grouping."""
    lapsed_at: float | None = None
    """Monotonic instant at which its lease ended (None while it holds)."""


Key = tuple[str, str]
"""(service name, agent address): what a registration is known by."""


class Registrations:
    """The self-registered agents, grouped into services (module docstring)."""

    def __init__(
        self,
        settings: DiscoverySettings,
        *,
        clocks: Clocks,
        state: RegistrationState | None = None,
    ) -> None:
        self.settings = settings
        self._clocks = clocks
        self._state = state
        self.on_change: Callable[[], None] = lambda: None
        self._news = RateLimitedLog(_LOG)
        """A line per registration, renewal of a lapsed one and removal, a flood's kept short."""
        self._held: dict[Key, _Held] = {}
        self._by_address: dict[str, Key] = {}
        self._sequence = itertools.count()
        self._entries: tuple[ServiceEntry, ...] = ()
        self._built = True
        self._unsaved = False
        self._next_due = float("inf")
        self._status = SourceStatus(
            SourceKind.REGISTRATIONS, "in memory" if state is None else str(state.path)
        )
        if state is not None:
            self._restore(state.load())

    @property
    def status(self) -> SourceStatus:
        """Always good (a state file that cannot be written is logged)."""
        if not self._built:
            self._rebuild()
        return self._status

    @property
    def entries(self) -> Sequence[ServiceEntry]:
        """One entry per registered service (the same object while nothing changed)."""
        if not self._built:
            self._rebuild()
        return self._entries

    def __len__(self) -> int:
        """How many registrations are held (lapsed ones included)."""
        return len(self._held)

    def owner_of(self, address: str) -> str | None:
        """The service whose registration holds `address`, if any."""
        key = self._by_address.get(address)
        return None if key is None else key[0]

    def register(self, new: Registration) -> bool:
        """Hold `new` with a fresh lease; True when it was not held (False: renewed).

        Raises RegistrationTaken when its address is another service's live registration,
        RegistrationsFull at `max_registrations`.
        """
        now = self._clocks.monotonic()
        key = (new.service_name, new.address)
        held = self._held.get(key)
        if held is not None:
            if held.registration != new or held.lapsed_at is not None:
                held.registration, held.lapsed_at = new, None
                held.sequence = next(self._sequence)
                self._changed()
            held.expires_at = now + self.settings.lease_seconds
            return False
        self._make_room(new, now)
        self._held[key] = _Held(new, now + self.settings.lease_seconds, next(self._sequence))
        self._by_address[new.address] = key
        self._next_due = min(self._next_due, now + self.settings.lease_seconds)
        self._news.log(logging.INFO, "registered %r at %s", new.service_name, new.address)
        self._changed()
        return True

    def renew(self, service_name: str, address: str) -> None:
        """Extend the lease of a held registration (a lapsed one holds again).

        Raises RegistrationUnknown when it is not held.
        """
        held = self._held.get((service_name, address))
        if held is None:
            raise RegistrationUnknown(
                f"{quote(service_name)} at {quote(address)} is not registered (removed, or the "
                "aggregator restarted without its state): register again"
            )
        held.expires_at = self._clocks.monotonic() + self.settings.lease_seconds
        if held.lapsed_at is not None:
            held.lapsed_at = None
            self._news.log(
                logging.INFO, "registration of %r at %s renewed: live again", service_name, address
            )
            self._changed()

    def deregister(self, service_name: str, address: str) -> bool:
        """Remove a registration at once; False when it was not held."""
        if (service_name, address) not in self._held:
            return False
        self._remove((service_name, address))
        self._news.log(logging.INFO, "deregistered %r at %s", service_name, address)
        self._changed()
        return True

    async def refresh(self, *, force: bool = False) -> None:
        """Lapse the leases that ended, remove the long-lapsed, save a changed set."""
        now = self._clocks.monotonic()
        if now >= self._next_due:
            self._expire(now)
        if self._unsaved and self._state is not None:
            self._unsaved = False
            try:
                await self._save()
            except BaseException:  # cancelled (a stop): the close saves it
                self._unsaved = True
                raise

    async def close(self) -> None:
        """Save a changed set; a second call is harmless."""
        await self.refresh()

    def _make_room(self, new: Registration, now: float) -> None:
        """Take over the address from a lapsed registration, or check the cap."""
        other = self._by_address.get(new.address)
        if other is not None:
            held = self._held[other]
            if held.lapsed_at is None:
                raise RegistrationTaken(
                    f"agent address {new.address} is registered for service {quote(other[0])} "
                    f"(its lease holds {held.expires_at - now:.0f} s more): one agent answers "
                    "for one service"
                )
            self._remove(other)
            return
        limit = self.settings.max_registrations
        if len(self._held) >= limit:
            raise RegistrationsFull(
                f"registration refused: the aggregator holds {limit} registrations, the limit "
                "([discovery] max_registrations); lapsed ones leave after remove_after_seconds"
            )

    def _remove(self, key: Key) -> None:
        del self._held[key]
        del self._by_address[key[1]]

    def _changed(self) -> None:
        self._built = False
        self._unsaved = True
        self.on_change()

    def _expire(self, now: float) -> None:
        """Lapse ended leases, remove registrations lapsed for remove_after; set _next_due."""
        remove_after = self.settings.remove_after_seconds
        lapsed: list[str] = []
        removed: list[Key] = []
        due = float("inf")
        for key, held in self._held.items():
            if held.lapsed_at is None and held.expires_at <= now:
                held.lapsed_at = held.expires_at
                lapsed.append(f"{key[0]!r} at {key[1]}")
            if held.lapsed_at is None:
                due = min(due, held.expires_at)
            elif held.lapsed_at + remove_after <= now:
                removed.append(key)
            else:
                due = min(due, held.lapsed_at + remove_after)
        self._next_due = due
        for key in removed:
            self._remove(key)
        if lapsed:
            _LOG.warning(
                "%d registrations lapsed (no renewal for %g s): shown inactive and not called, "
                "removed after %g s unless renewed: %s",
                len(lapsed),
                self.settings.lease_seconds,
                remove_after,
                quote_list(lapsed),
            )
        if removed:
            _LOG.info(
                "%d lapsed registrations removed: %s",
                len(removed),
                quote_list(f"{name!r} at {address}" for name, address in removed),
            )
        if lapsed or removed:
            self._changed()

    def _rebuild(self) -> None:
        """The entries of the held registrations, one per service name (module docstring)."""
        groups: dict[str, list[_Held]] = {}
        for held in self._held.values():
            groups.setdefault(held.registration.service_name, []).append(held)
        self._entries = tuple(_entry(name, members) for name, members in groups.items())
        self._built = True
        self._status = dataclasses.replace(
            self._status, read_time=self._clocks.wall(), services=len(self._entries)
        )

    def _restore(self, saved: Sequence[Saved]) -> None:
        """Hold what a state file kept: live ones with a fresh lease, lapsed ones as they were."""
        now, wall = self._clocks.monotonic(), self._clocks.wall()
        lease, remove_after = self.settings.lease_seconds, self.settings.remove_after_seconds
        for item in saved[: self.settings.max_registrations]:
            new = item.registration
            key = (new.service_name, new.address)
            if key in self._held or new.address in self._by_address:
                continue
            lapsed_at = None if item.lapsed_time is None else now - (wall - item.lapsed_time)
            if lapsed_at is not None and lapsed_at + remove_after <= now:
                continue
            self._held[key] = _Held(new, now + lease, next(self._sequence), lapsed_at)
            self._by_address[new.address] = key
        self._next_due = now
        self._built = False
        if self._held:
            _LOG.info(
                "%d registrations restored from %s; their agents renew within one lease",
                len(self._held),
                self._status.name,
            )

    async def _save(self) -> None:
        """Write the held registrations to the state file, off the event loop."""
        assert self._state is not None
        now, wall = self._clocks.monotonic(), self._clocks.wall()
        items = [
            Saved(
                held.registration,
                None if held.lapsed_at is None else wall - (now - held.lapsed_at),
            )
            for held in self._held.values()
        ]
        await asyncio.to_thread(self._state.save, items)


def _entry(name: str, members: Sequence[_Held]) -> ServiceEntry:
    """The entry of one registered service: an instance per registration."""
    latest = max(members, key=lambda held: held.sequence).registration
    addresses = tuple(held.registration.address for held in members)
    lapsed = tuple(held.registration.address for held in members if held.lapsed_at is not None)
    first = members[0].registration.agent
    return ServiceEntry(
        name,
        first.host,
        latest.port or first.port,
        first.port,
        latest.service_type,
        latest.data_source,
        instances=addresses if len(addresses) > 1 else (),
        lapsed=lapsed,
    )
