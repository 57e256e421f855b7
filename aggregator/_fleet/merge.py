"""The union of the sources: one `Registry`, and what changed since the last one (pure).

The rule when two sources name the same service: **the first source wins**, the later
entry is dropped whole and the conflict is reported (logged once, listed by GetFleet and
/health/detailed). Sources come in priority order: the mesh file's `[[services]]`, then
file_sd, then each http_sd URL in configured order (then self-registrations). So a service
an operator wrote down is never redefined by discovery, and a removal in one source never
depends on another. Instances are not merged across sources: a service's instances come
from one source, where they are listed together (one file_sd file or several, or one URL,
may give one service many targets). An agent address already used by an earlier service
is a conflict too (one agent answers for one service); the later entry is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aggregator._fleet.source import SourceStatus
from mesh_common.registry import Registry, ServiceEntry


@dataclass(frozen=True, slots=True)
class Merged:
    """The registry of every source, whose source each service came from, and the conflicts."""

    registry: Registry
    owners: dict[str, SourceStatus]
    """The source of each service, by name."""
    conflicts: tuple[str, ...]
    """One sentence per dropped entry, naming both sources."""


@dataclass(frozen=True, slots=True)
class FleetChange:
    """What a new registry changed: service names added, removed, and changed in place."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    """Same name, another entry (type, data source, port or agent address)."""
    services: int = 0
    """How many services the registry has now."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        """`2 added (a, b), 1 removed (c); 16 services`, for the log."""
        parts = [
            f"{len(names)} {word} ({', '.join(names)})"
            for word, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        return f"{', '.join(parts) or 'no change'}; {self.services} services"


def merge_sources(sources: Iterable[tuple[SourceStatus, Sequence[ServiceEntry]]]) -> Merged:
    """One registry from every source's entries, in source order (module docstring)."""
    entries: list[ServiceEntry] = []
    owners: dict[str, SourceStatus] = {}
    address_owner: dict[str, str] = {}
    conflicts: list[str] = []
    for status, contribution in sources:
        for entry in contribution:
            first = owners.get(entry.name)
            if first is not None:
                conflicts.append(
                    f"service {entry.name!r} of {status.label} is also in {first.label}: "
                    f"the {first.kind.value} entry is kept"
                )
                continue
            taken = [a for a in entry.addresses if a in address_owner]
            if taken:
                other = address_owner[taken[0]]
                conflicts.append(
                    f"service {entry.name!r} of {status.label}: agent address {taken[0]} is "
                    f"already called for {other!r} (of {owners[other].label}); {entry.name!r} "
                    "is left out"
                )
                continue
            owners[entry.name] = status
            for address in entry.addresses:
                address_owner[address] = entry.name
            entries.append(entry)
    return Merged(Registry(entries), owners, tuple(conflicts))


def changes(old: Registry, new: Registry) -> FleetChange:
    """What `new` adds, removes and changes compared with `old`."""
    before = {entry.name: entry for entry in old}
    after = {entry.name: entry for entry in new}
    return FleetChange(
        added=tuple(name for name in after if name not in before),
        removed=tuple(name for name in before if name not in after),
        changed=tuple(
            name for name, entry in after.items() if name in before and before[name] != entry
        ),
        services=len(new),
    )
