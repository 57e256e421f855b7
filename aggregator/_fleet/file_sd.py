"""Prometheus file_sd files as a source of the fleet: `FileSd`, the `[discovery] file_sd` globs.

Every check expands the globs and stamps each file (`watch`); a new or changed file (every
file when forced) is read again, off the event loop, as target groups
(`target_groups.read_groups`: JSON for `.json`, YAML otherwise). A file that went away takes
its services with it. Per file, as Prometheus does: **a file that cannot be read or parsed
keeps its previous services** (one warning per distinct problem). **An empty file** (what a
producer that truncates before writing leaves for a moment) keeps its previous services for
one more check, where it is read again: still empty, it gives none; written by then, its
new content counts. So a non-atomic write never wipes the fleet for longer than one re-read.
Files merge in sorted path order; a service named in several files has the targets of all,
the labels of the first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import yaml

from aggregator._fleet.source import SourceKind, SourceStatus
from aggregator._fleet.target_groups import Discovered, read_groups, to_entry
from aggregator._fleet.watch import FileStamp, expand, file_stamp
from mesh_common.clocks import Clocks
from mesh_common.errors import ConfigError
from mesh_common.registry import ServiceEntry

_LOG = logging.getLogger("aggregator.fleet")


def read_file(path: str, max_bytes: int) -> dict[str, Discovered] | None:
    """The services of a file_sd file; None when it is empty; ConfigError naming the file."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from error
    if len(data) > max_bytes:
        raise ConfigError(f"{path}: larger than max_bytes ({max_bytes} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8: {error}") from error
    if not text.strip():
        return None
    try:
        document = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from error
    return read_groups(document, path)


@dataclass
class _File:
    """What one file gave at its last good read, and how its last read went."""

    stamp: FileStamp | None = None
    services: dict[str, Discovered] = field(default_factory=dict)
    error: str = ""
    empty_once: bool = False
    """It read empty once while it had services: they stay until it is read again."""


class FileSd:
    """The services of every file the `[discovery] file_sd` globs match (module docstring)."""

    def __init__(self, patterns: Sequence[str], *, clocks: Clocks, max_bytes: int) -> None:
        """Reads the files once, now (so the first round calls their services)."""
        self._patterns = tuple(patterns)
        self._clocks = clocks
        self._max_bytes = max_bytes
        self._files: dict[str, _File] = {}
        self._entries: tuple[ServiceEntry, ...] = ()
        self.on_change: Callable[[], None] = lambda: None
        self._status = SourceStatus(SourceKind.FILE_SD, ", ".join(self._patterns))
        for path in expand(self._patterns):
            self._files[path] = state = _File()
            self._take(path, state, file_stamp(path), _attempt(path, max_bytes))
        self._settle()

    @property
    def status(self) -> SourceStatus:
        """How the last check went (the files that failed, each with its reason)."""
        return self._status

    @property
    def entries(self) -> Sequence[ServiceEntry]:
        """The services of every file, merged."""
        return self._entries

    async def refresh(self, *, force: bool = False) -> None:
        """Read the files that are new, changed, read empty once, or all when `force`."""
        paths = expand(self._patterns)
        for gone in set(self._files) - set(paths):
            del self._files[gone]
            _LOG.info("file_sd: %s is gone, and its services with it", gone)
        for path in paths:
            state = self._files.setdefault(path, _File())
            stamp = file_stamp(path)
            if force or stamp != state.stamp or state.empty_once:
                read = await asyncio.to_thread(_attempt, path, self._max_bytes)
                self._take(path, state, stamp, read)
        self._settle()

    async def close(self) -> None:
        """Nothing to release."""

    def _take(
        self,
        path: str,
        state: _File,
        stamp: FileStamp | None,
        read: dict[str, Discovered] | ConfigError | None,
    ) -> None:
        """Keep a read's outcome for `path` (module docstring: errors and empty files)."""
        state.stamp = stamp
        if isinstance(read, ConfigError):
            if str(read) != state.error:
                _LOG.warning("file_sd: %s; its last good services stay", read)
            state.error = str(read)
            return
        if state.error:
            _LOG.info("file_sd: %s reads again", path)
        state.error = ""
        if read is None and state.services and not state.empty_once:
            state.empty_once = True
            _LOG.info("file_sd: %s is empty; its services stay until it is read again", path)
            return
        state.empty_once = False
        state.services = read or {}

    def _settle(self) -> None:
        """Merge the files' services; set the status."""
        merged: dict[str, Discovered] = {}
        for path in sorted(self._files):
            for name, service in self._files[path].services.items():
                known = merged.get(name)
                if known is None:
                    merged[name] = service
                else:
                    more = tuple(t for t in service.targets if t not in known.targets)
                    merged[name] = Discovered(
                        known.name, known.type, known.data_source, known.port, known.targets + more
                    )
        entries = tuple(to_entry(service) for service in merged.values())
        errors = "; ".join(state.error for state in self._files.values() if state.error)
        read_time = self._status.read_time if errors else self._clocks.wall()
        self._status = SourceStatus(
            SourceKind.FILE_SD, self._status.name, errors, read_time, len(entries)
        )
        if entries != self._entries:
            self._entries = entries  # else the same object: the fleet sees nothing changed


def _attempt(path: str, max_bytes: int) -> dict[str, Discovered] | ConfigError | None:
    """`read_file`'s result, or the ConfigError it raised."""
    try:
        return read_file(path, max_bytes)
    except ConfigError as error:
        return error
