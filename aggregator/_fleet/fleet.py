"""`Fleet`: every source of the registry, checked each interval, merged, handed to the rounds.

Each `interval` (the round interval) the fleet asks every source to refresh (each decides
whether it is due), merges their contributions (`merge.merge_sources`) and, when the merged
registry differs from the one in force, hands it to the rounds (`apply`, the round loop's
`replace_registry`: it takes effect at the next round). So a change on disk reaches the
rounds within two intervals: one to be seen, one to be called. `reload()` (SIGHUP,
ReloadRegistry) re-reads every source at once. `wake()` merges again without re-reading,
for a source whose contribution changed by itself (self-registrations). One refresh runs at
a time; a failure of one never stops the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aggregator._fleet.merge import FleetChange, Merged, changes, merge_sources
from aggregator._fleet.source import FleetSource, SourceStatus
from mesh_common.registry import Registry

_LOG = logging.getLogger("aggregator.fleet")


class Fleet:
    """The live registry: the union of `sources`, in their priority order (`merge`)."""

    def __init__(
        self,
        sources: Sequence[FleetSource],
        apply: Callable[[Registry], None],
        *,
        interval_seconds: float,
    ) -> None:
        self.sources = tuple(sources)
        self._apply = apply
        self._interval = interval_seconds
        self._given = tuple(source.entries for source in self.sources)
        self._merged = self._merge()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        for source in self.sources:
            source.on_change = self.wake
        for conflict in self._merged.conflicts:
            _LOG.warning("fleet: %s", conflict)

    @property
    def registry(self) -> Registry:
        """The merged registry last handed to the rounds."""
        return self._merged.registry

    @property
    def merged(self) -> Merged:
        """The registry, whose source each service came from, and the conflicts."""
        return self._merged

    @property
    def statuses(self) -> tuple[SourceStatus, ...]:
        """Each source's status, in priority order."""
        return tuple(source.status for source in self.sources)

    def start(self) -> None:
        """Check the sources every interval from now on (needs a running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fleet")

    async def stop(self) -> None:
        """Stop checking and close every source; a second call is harmless."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for source in self.sources:
            await source.close()

    def wake(self) -> None:
        """Merge again soon, without waiting for the interval (a source changed by itself)."""
        self._wake.set()

    async def refresh(self) -> FleetChange:
        """Refresh the sources that are due, merge, apply a changed registry."""
        return await self._refresh(force=False)

    async def reload(self) -> FleetChange:
        """Re-read every source now (SIGHUP, ReloadRegistry), merge, apply."""
        return await self._refresh(force=True)

    async def _refresh(self, *, force: bool) -> FleetChange:
        async with self._lock:
            results = await asyncio.gather(
                *(source.refresh(force=force) for source in self.sources), return_exceptions=True
            )
            for source, result in zip(self.sources, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result
                if isinstance(result, Exception):
                    _LOG.error("fleet: %s failed", source.status.label, exc_info=result)
            return self._merge_and_apply(announce=force)

    def _merge(self) -> Merged:
        return merge_sources((source.status, source.entries) for source in self.sources)

    def _merge_and_apply(self, *, announce: bool) -> FleetChange:
        """Merge; hand a changed registry to the rounds; log it (a reload's outcome always)."""
        change = self._merge_if_given_changed()
        if change is None:
            change = FleetChange(services=len(self._merged.registry))
            if announce:
                _LOG.info("fleet: reloaded, %s", change.summary())
            return change
        self._apply(self._merged.registry)
        _LOG.info("fleet: %s from the next round", change.summary())
        return change

    def _merge_if_given_changed(self) -> FleetChange | None:
        """What the merged registry changed; None when it did not.

        No source gave other entries (the same objects, the common case of a check every
        interval): nothing is merged.
        """
        given = tuple(source.entries for source in self.sources)
        if all(new is old for new, old in zip(given, self._given, strict=True)):
            return None
        self._given = given
        merged = self._merge()
        previous, self._merged = self._merged, merged
        for conflict in merged.conflicts:
            if conflict not in previous.conflicts:
                _LOG.warning("fleet: %s", conflict)
        if merged.registry == previous.registry:
            return None
        return changes(previous.registry, merged.registry)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOG.exception("fleet: a refresh failed; the next one runs in an interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
