"""The mesh file's `[[services]]`, watched: `RegistryFile`, the first source of the fleet.

Every check stats the file (`watch.file_stamp`: an edit, an atomic rename and a ConfigMap
symlink swap all change the stamp); a changed file, or a forced reload, is read again off
the event loop, **whole and strictly, as at start** (every table the aggregator reads, so a
file that would not start the aggregator is not half applied). Only `[[services]]` takes
effect: when another table the aggregator reads changed, one warning says it waits for a
restart. A file that cannot be read keeps the last good services; one warning per distinct
problem names the file, the line and the key, and the file is tried again at every check
until it reads (a certificate named in `[tls]` may be halfway through its rotation).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aggregator._fleet.source import SourceKind, SourceStatus
from aggregator._fleet.watch import FileStamp, file_stamp
from aggregator._settings import read_config
from mesh_common.clocks import Clocks
from mesh_common.config import load_mesh_file
from mesh_common.errors import ConfigError
from mesh_common.registry import Registry, ServiceEntry
from mesh_common.toml_lines import key_on_line, line_of, syntax_error_line

_LOG = logging.getLogger("aggregator.fleet")

RESTART_TABLES = ("aggregator", "alerts", "history", "ingest", "tls", "auth", "discovery")
"""The tables the aggregator reads only at start: a change waits for a restart."""


@dataclass(frozen=True, slots=True)
class MeshRead:
    """A mesh file read as at start: its registry, and the tables that need a restart."""

    registry: Registry
    tables: Mapping[str, object]
    """The raw value of each of RESTART_TABLES (None when absent)."""


def read_mesh_file(path: str) -> MeshRead:
    """Read `path` strictly, every table the aggregator reads; ConfigError naming the key."""
    mesh = load_mesh_file(path)
    config = read_config(mesh, check_rules=False)
    return MeshRead(config.services, {name: mesh.tables.get(name) for name in RESTART_TABLES})


def describe(error: ConfigError, path: str) -> str:
    """The error with the line and the key it is about, when they can be told."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return str(error)
    cause = error.__cause__
    if isinstance(cause, tomllib.TOMLDecodeError):
        line = syntax_error_line(cause)  # the message says the line already
        key = key_on_line(text, line) if line is not None else None
        return f"{error} (key {key!r})" if key else str(error)
    line = line_of(text, error.location)
    keys = [part for part in error.location[1:] if isinstance(part, str)]
    where = [f"line {line}"] if line is not None else []
    where += [f"key {keys[-1]!r}"] if keys else []
    return f"{error} ({', '.join(where)})" if where else str(error)


class RegistryFile:
    """The `[[services]]` of the mesh file at `path` (module docstring)."""

    def __init__(self, path: str | os.PathLike[str], registry: Registry, *, clocks: Clocks) -> None:
        """`registry` is what the aggregator started with (the file's, read at start)."""
        self._path = str(path)
        self._clocks = clocks
        self.on_change: Callable[[], None] = lambda: None
        self._entries: Sequence[ServiceEntry] = registry
        self._stamp: FileStamp | None = file_stamp(self._path)
        self._tables: Mapping[str, object] | None = None
        self._warned_tables: tuple[str, ...] = ()
        self._status = SourceStatus(
            SourceKind.SERVICES, self._path, read_time=clocks.wall(), services=len(registry)
        )
        with contextlib.suppress(ConfigError):  # changed since start and broken: a check says why
            self._tables = read_mesh_file(self._path).tables

    @property
    def status(self) -> SourceStatus:
        """How the last read went."""
        return self._status

    @property
    def entries(self) -> Sequence[ServiceEntry]:
        """The services of the last good read."""
        return self._entries

    async def refresh(self, *, force: bool = False) -> None:
        """Read the file again if it changed, still fails, or `force`."""
        stamp = file_stamp(self._path)
        if not force and stamp == self._stamp and not self._status.error:
            return
        self._stamp = stamp
        try:
            read = await asyncio.to_thread(read_mesh_file, self._path)
        except ConfigError as error:
            self._failed(describe(error, self._path))
            return
        if self._status.error:
            _LOG.info("%s reads again: registry reloaded", self._path)
        self._entries = read.registry
        self._status = dataclasses.replace(
            self._status, error="", read_time=self._clocks.wall(), services=len(read.registry)
        )
        self._note_restart_tables(read.tables)

    async def close(self) -> None:
        """Nothing to release."""

    def _failed(self, reason: str) -> None:
        if reason != self._status.error:
            _LOG.warning(
                "registry not reloaded: %s; the last good registry stays (%d services)",
                reason,
                len(self._entries),
            )
        self._status = dataclasses.replace(self._status, error=reason)

    def _note_restart_tables(self, tables: Mapping[str, object]) -> None:
        """One warning per new set of changed tables that only a restart applies."""
        if self._tables is None:
            self._tables = tables
        changed = tuple(name for name in RESTART_TABLES if tables[name] != self._tables[name])
        if changed and changed != self._warned_tables:
            _LOG.warning(
                "%s: %s changed; only [[services]] is reloaded, the other tables take effect "
                "when the aggregator restarts",
                self._path,
                ", ".join(f"[{name}]" for name in changed),
            )
        self._warned_tables = changed
