"""A Prometheus http_sd URL as a source of the fleet: `HttpSd`, one per `[discovery] http_sd`.

The URL is read every `http_sd_refresh_seconds` (on the injected monotonic clock), in a
task of its own so a slow URL never delays the other sources' checks; when its services
change it wakes the fleet. A forced refresh (SIGHUP, ReloadRegistry) reads it now and waits
for the answer. As Prometheus requires of an http_sd endpoint: HTTP 200,
`Content-Type: application/json`, a list of target groups (`target_groups`); the request
carries `X-Prometheus-Refresh-Interval-Seconds` as Prometheus's does. Bounded: the whole
read within `http_sd_timeout_seconds`, at most `max_bytes` of body. **Any failure keeps
the last good list** (one warning per distinct problem; the status says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence

import httpx

from aggregator._fleet.source import SourceKind, SourceStatus
from aggregator._fleet.target_groups import read_groups, to_entry
from mesh_common.clocks import Clocks
from mesh_common.errors import ConfigError
from mesh_common.redact import redact
from mesh_common.registry import ServiceEntry
from mesh_common.version import version

_LOG = logging.getLogger("aggregator.fleet")


class HttpSd:
    """The services one http_sd URL lists (module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        clocks: Clocks,
        refresh_seconds: float,
        timeout_seconds: float,
        max_bytes: int,
    ) -> None:
        self._url = url
        self._clocks = clocks
        self._refresh_seconds = refresh_seconds
        self._timeout = timeout_seconds
        self._max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            timeout=timeout_seconds,
            follow_redirects=True,
            headers={
                "Accept": "application/json",
                "User-Agent": f"metrics-mesh/{version()}",
                "X-Prometheus-Refresh-Interval-Seconds": f"{refresh_seconds:g}",
            },
        )
        self._entries: tuple[ServiceEntry, ...] = ()
        self._status = SourceStatus(SourceKind.HTTP_SD, redact(url), error="not read yet")
        self._due_at = -math.inf
        self._read: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] = lambda: None

    @property
    def status(self) -> SourceStatus:
        """How the last read went."""
        return self._status

    @property
    def entries(self) -> Sequence[ServiceEntry]:
        """The services of the last good answer."""
        return self._entries

    async def refresh(self, *, force: bool = False) -> None:
        """Start a read when one is due (now when `force`, and then wait for it)."""
        now = self._clocks.monotonic()
        if (self._read is None or self._read.done()) and (force or now >= self._due_at):
            self._due_at = now + self._refresh_seconds
            self._read = asyncio.get_running_loop().create_task(self._read_once(), name="http_sd")
        if force and self._read is not None:
            await asyncio.shield(self._read)

    async def close(self) -> None:
        """Stop a read in flight and close the client; a second call is harmless."""
        task, self._read = self._read, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()

    async def _read_once(self) -> None:
        name = self._status.name
        try:
            async with asyncio.timeout(self._timeout):
                body = await self._get()
            services = read_groups(_json(body, name), name)
        except ConfigError as error:
            self._failed(str(error))
            return
        except TimeoutError:
            self._failed(f"{name}: no answer within {self._timeout:g} s")
            return
        except httpx.HTTPError as error:
            self._failed(f"{name}: {redact(str(error) or type(error).__name__)}")
            return
        if self._status.error and self._status.read_time is not None:
            _LOG.info("http_sd: %s answers again", name)
        entries = tuple(to_entry(service) for service in services.values())
        self._status = dataclasses.replace(
            self._status, error="", read_time=self._clocks.wall(), services=len(entries)
        )
        if entries != self._entries:
            self._entries = entries
            self.on_change()

    async def _get(self) -> bytes:
        """The body of a 200 application/json answer, at most max_bytes; ConfigError else."""
        name = self._status.name
        async with self._client.stream("GET", self._url) as response:
            if response.status_code != 200:
                raise ConfigError(f"{name}: HTTP {response.status_code}, not 200")
            kind = response.headers.get("content-type", "")
            if kind.split(";")[0].strip().lower() != "application/json":
                raise ConfigError(f"{name}: Content-Type {kind!r}, not application/json")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise ConfigError(f"{name}: answer larger than max_bytes ({self._max_bytes})")
        return bytes(body)

    def _failed(self, reason: str) -> None:
        if reason != self._status.error:
            _LOG.warning("http_sd: %s; its last good services stay", reason)
        self._status = dataclasses.replace(self._status, error=reason)


def _json(body: bytes, name: str) -> object:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{name}: not a JSON list of target groups: {error}") from error
