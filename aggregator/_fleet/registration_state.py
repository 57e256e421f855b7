"""`registrations.json` in the aggregator's state directory: the registrations across a restart.

    {"version": 1, "registrations": [{"service_name": "weather-api", "address": "10.0.0.5:18009",
      "service_type": "data", "data_source": "weather", "port": 8009, "lapsed_time": null}]}

Written whole to a temporary file beside it and renamed over it (a crash leaves the old file
or the new one, never half of one), by `Registrations` when its set changed. Read at start:
each item is checked as a registration is (`registration.registration`), and an item or a
file that does not read is left out with one warning: the agents register again within one
renew interval, so a lost file costs a short gap, never a wrong fleet. The file is read up
to MAX_BYTES.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator._fleet.registration import Registration, registration
from mesh_common.errors import MeshError

_LOG = logging.getLogger("aggregator.fleet")

FILE_NAME = "registrations.json"
"""The state file's name in the state directory."""
VERSION = 1
"""The layout written; a file of another version is not read."""
MAX_BYTES = 16 * 1024 * 1024
"""The largest state file read (far above what max_registrations items take)."""


@dataclass(frozen=True, slots=True)
class Saved:
    """A registration as the state file keeps it."""

    registration: Registration
    lapsed_time: float | None
    """Wall-clock time at which its lease ended (None while it held)."""


class RegistrationState:
    """The state file at `path` (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._warned = ""
        self._writing = threading.Lock()
        """One write at a time: a cancelled save's thread still finishes before the next."""

    def load(self) -> list[Saved]:
        """The registrations the file keeps; none (one warning) when it cannot be read."""
        try:
            with self.path.open("rb") as file:
                data = file.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return []
        except OSError as error:
            _LOG.warning("%s cannot be read (%s): registrations start empty", self.path, error)
            return []
        try:
            if len(data) > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES} bytes")
            document = json.loads(data)
            if not isinstance(document, dict) or document.get("version") != VERSION:
                raise ValueError(f"not a version {VERSION} registrations file")
            items = document.get("registrations")
            if not isinstance(items, list):
                raise ValueError("no registrations list")
        except ValueError as error:
            _LOG.warning("%s does not read (%s): registrations start empty", self.path, error)
            return []
        saved: list[Saved] = []
        for item in items:
            try:
                saved.append(_item(item))
            except (MeshError, KeyError, TypeError, ValueError) as error:
                _LOG.warning("%s: an item left out (%s): %.200r", self.path, error, item)
        return saved

    def save(self, items: Sequence[Saved]) -> None:
        """Replace the file with `items` (atomically); a failure is logged once per reason."""
        document = {"version": VERSION, "registrations": [_json(item) for item in items]}
        with self._writing:
            self._write(document)

    def _write(self, document: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, prefix=f".{FILE_NAME}.", delete=False, encoding="utf-8"
            ) as file:
                json.dump(document, file, separators=(",", ":"))
            try:
                os.replace(file.name, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(file.name)
                raise
        except OSError as error:
            reason = str(error)
            if reason != self._warned:
                _LOG.warning(
                    "registrations not saved to %s (%s): they are kept in memory, and lost by "
                    "a restart until their agents register again",
                    self.path,
                    reason,
                )
            self._warned = reason
            return
        if self._warned:
            _LOG.info("registrations saved to %s again", self.path)
            self._warned = ""


def _json(item: Saved) -> dict[str, Any]:
    each = item.registration
    return {
        "service_name": each.service_name,
        "address": each.address,
        "service_type": each.service_type,
        "data_source": each.data_source,
        "port": each.port,
        "lapsed_time": item.lapsed_time,
    }


def _item(item: Any) -> Saved:
    """One item of the file, checked as a registration is."""
    lapsed = item["lapsed_time"]
    if lapsed is not None and not isinstance(lapsed, int | float):
        raise ValueError("lapsed_time is not a number")
    port = item["port"]
    if not isinstance(port, int):
        raise ValueError("port is not a number")
    new = registration(
        str(item["service_name"]),
        str(item["address"]),
        service_type=str(item["service_type"]),
        data_source=str(item["data_source"]),
        port=port,
    )
    return Saved(new, None if lapsed is None else float(lapsed))
