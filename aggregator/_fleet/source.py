"""What every source of the registry is to the fleet: `FleetSource` and its `SourceStatus`.

A source holds its last good contribution (`entries`: the same object as long as nothing
changed) and says how its last read went (`status`). `refresh()` reads again when the
source is due (a watched file whose stamp changed, a URL whose refresh interval passed) or
when forced (SIGHUP, ReloadRegistry); a read that fails keeps the last good entries and
sets `status.error`. A source never raises from `refresh()` for what it reads: a bad file
or a dead URL is a status, not an exception. A source whose entries change between two
refreshes (an answer that took its time, a registration) calls `on_change()`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mesh_common.registry import Registry, ServiceEntry


class SourceKind(enum.Enum):
    """What a source reads (its wire value is `FleetSourceKind`)."""

    SERVICES = "services"
    """The mesh file's `[[services]]` tables, or the registry the aggregator was built with."""
    FILE_SD = "file_sd"
    """Prometheus file_sd files (`[discovery] file_sd`)."""
    HTTP_SD = "http_sd"
    """A Prometheus http_sd URL (`[discovery] http_sd`)."""
    REGISTRATIONS = "registrations"
    """The agents that registered themselves (`[discovery] accept_registrations`)."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How a source's last read went."""

    kind: SourceKind
    name: str
    """What it reads: the mesh file's path, a file_sd pattern, an http_sd URL (no password)."""
    error: str = ""
    """Why its last read failed ("" when it succeeded); its last good entries stay."""
    read_time: float | None = None
    """Wall-clock time of its last good read (None before one)."""
    services: int = 0
    """How many services it gives."""

    @property
    def label(self) -> str:
        """`kind name`, as logs and conflicts name the source."""
        return f"{self.kind.value} {self.name}"


class FleetSource(Protocol):
    """One place services come from (module docstring)."""

    on_change: Callable[[], None]
    """Set by the fleet (its `wake`): a source whose entries change outside `refresh()` (an
    answer that arrived, a registration) calls it after the change."""

    @property
    def status(self) -> SourceStatus:
        """How the last read went."""
        ...

    @property
    def entries(self) -> Sequence[ServiceEntry]:
        """Its last good services, in its own order, names unique within the source."""
        ...

    async def refresh(self, *, force: bool = False) -> None:
        """Read again if due (always when `force`); keep the last good entries on failure."""
        ...

    async def close(self) -> None:
        """Release what it holds (a client, a task); a second call is harmless."""
        ...


class StaticSource:
    """A registry given in code (no mesh file): it never changes."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.on_change: Callable[[], None] = lambda: None
        self._status = SourceStatus(SourceKind.SERVICES, "built-in", services=len(registry))

    @property
    def status(self) -> SourceStatus:
        """Always good."""
        return self._status

    @property
    def entries(self) -> Sequence[ServiceEntry]:
        """The registry given."""
        return self._registry

    async def refresh(self, *, force: bool = False) -> None:
        """Nothing to read."""

    async def close(self) -> None:
        """Nothing to release."""
