"""HistoryWriter: the round loop's observer that keeps every round in the history store.

`observe(snapshot)` runs on the event loop and only hands the round's shared wire message
(`WholeSnapshots`, the one alerts and streams read) to a worker thread: it never waits, so it
never delays a round or another observer. The worker thread (`Recorder`) computes the samples,
encodes them and runs the SQL; it seals, rolls up and expires chunks between rounds. Its queue
holds at most `queue_rounds` rounds (two seconds of them): that, and the round in flight, is
what a `kill -9` can lose, since a round is durable once its head row is committed. When the
queue is full (the worker is behind), a round is dropped and counted; its events are counted
by the next round kept, and its pushed series (`SnapshotData.pushed`, the full tuple, not the
wire's capped copy) go with the next round kept (the latest value of each).

Lifecycle: `start()` starts the thread, which opens the store and rebuilds its state
(`recovery.py`) before the first round; `close()` writes what is queued, closes the store and
ends the thread; a second `close()` is harmless. `reader` reads the history from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from metricsmesh.v1 import snapshot_pb2

from aggregator._convert import WholeSnapshots
from aggregator._history.memory import OpenChunks
from aggregator._history.model import Tier
from aggregator._history.pushed import PushedCatalog
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.store import StoreOpener
from aggregator._ingest.model import Labels, PushedSeries
from aggregator._model import SnapshotData
from mesh_common.clocks import Clocks

_LOG = logging.getLogger("aggregator.history")

QUEUE_SECONDS = 2.0
"""The worker's queue holds this many seconds of rounds (what a crash may lose)."""


def queue_rounds(interval_seconds: float) -> int:
    """How many rounds make QUEUE_SECONDS at `interval_seconds` (at least 2)."""
    return max(2, math.floor(QUEUE_SECONDS / interval_seconds))


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """How the history store is doing (GetHistoryStatus, /metrics, /health/detailed)."""

    tiers: tuple[Tier, ...]
    database: str
    """The store's file or URL ("" until it was opened once)."""
    degraded_reason: str
    """Why rounds are not being written ("" when they are): "history degraded: <reason>"."""
    rounds_written: int
    dropped_rounds: int
    """Rounds never stored: the queue or the retry buffer was full."""
    buffered_rounds: int
    """Rounds waiting in the retry buffer."""
    last_write_seconds: float
    """Worker time of the last round (samples, encoding, SQL; a seal when there was one)."""
    cpu_seconds: float
    """The worker thread's CPU spent on rounds so far."""


class _Flush:
    """A marker: the worker calls `done` once everything queued before it is handled."""

    def __init__(self, done: Callable[[], object]) -> None:
        self.done = done


class _Round(NamedTuple):
    """A round for the worker: its wire message and the pushed series changed since the last."""

    message: snapshot_pb2.Snapshot
    pushed: tuple[PushedSeries, ...]


_STOP = object()
_Item = _Round | _Flush | object


class HistoryWriter:
    """Keeps every round in the history store, off the event loop (see the module doc)."""

    def __init__(
        self,
        opener: StoreOpener,
        tiers: Sequence[Tier],
        *,
        whole: WholeSnapshots,
        clocks: Clocks,
        buffer_rounds: int = 300,
        queue_rounds: int = 2,
    ) -> None:
        self.memory = OpenChunks(tiers)
        pushed = PushedCatalog()
        self.reader = HistoryReader(self.memory, pushed)
        """Reads the history (stored chunks and the open ones); thread-safe, blocking."""
        self._recorder = Recorder(
            opener,
            self.memory,
            buffer_rounds=buffer_rounds,
            monotonic=clocks.monotonic,
            pushed=pushed,
        )
        self._carried: dict[tuple[str, Labels], PushedSeries] = {}
        """The pushed series of rounds dropped from the queue, for the next round queued."""
        self._whole = whole
        self._queue: collections.deque[_Item] = collections.deque()
        self._ready = threading.Condition()
        self._queued_rounds = 0
        self._queue_rounds = queue_rounds
        self._dropped = 0
        self._last_seen: tuple[int, int] = (0, 0)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._database = ""

    def start(self) -> None:
        """Start the worker thread (it opens the store first); a second call is harmless."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="history writer", daemon=True)
            self._thread.start()

    async def observe(self, snapshot: SnapshotData) -> None:
        """Queue `snapshot`'s round for the worker; never waits (an observer of the round loop)."""
        self._put_round(snapshot)

    def _put_round(self, snapshot: SnapshotData) -> None:
        key = (snapshot.epoch, snapshot.sequence)
        if key <= self._last_seen or self._closed:
            return
        self._last_seen = key
        pushed = snapshot.pushed
        if self._queued_rounds >= self._queue_rounds:  # read without the lock: only we add
            self._dropped += 1
            self._carried.update(((each.name, each.labels), each) for each in pushed)
            return
        if self._carried:
            carried, self._carried = self._carried, {}
            carried.update(((each.name, each.labels), each) for each in pushed)
            pushed = tuple(carried.values())
        message = self._whole.get(snapshot)
        with self._ready:
            self._queued_rounds += 1
            self._queue.append(_Round(message, pushed))
            self._ready.notify()

    def _put(self, item: _Item) -> None:
        with self._ready:
            self._queue.append(item)
            self._ready.notify()

    async def flush(self) -> None:
        """Return once every round queued so far is handled (written, or buffered if failing)."""
        if self._thread is None or self._closed:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._put(_Flush(lambda: loop.call_soon_threadsafe(_resolve, done)))
        await done

    async def close(self, last: SnapshotData | None = None) -> None:
        """Write what is queued, close the store and end the thread; a second call is harmless.

        `last` (the newest snapshot) is queued first if the observer has not seen it.
        """
        if last is not None and self._thread is not None:
            self._put_round(last)
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        self._put(_STOP)
        await asyncio.to_thread(thread.join)

    def status(self) -> HistoryStatus:
        """The store's state now (reads counters only: cheap, any thread)."""
        recorder = self._recorder
        store = recorder.store
        if store is not None:
            self._database = store.name
        return HistoryStatus(
            self.memory.tiers,
            self._database,
            recorder.degraded,
            recorder.rounds_written,
            recorder.dropped + self._dropped,
            recorder.buffered,
            recorder.last_write_seconds,
            recorder.cpu_seconds,
        )

    def _next(self) -> _Item:
        with self._ready:
            while not self._queue:
                self._ready.wait()
            item = self._queue.popleft()
            if isinstance(item, _Round):
                self._queued_rounds -= 1
            return item

    def _run(self) -> None:
        recorder = self._recorder
        self._guarded(recorder.open)
        while (item := self._next()) is not _STOP:
            if isinstance(item, _Flush):
                item.done()
            elif isinstance(item, _Round):
                self._guarded(functools.partial(recorder.record, item.message, item.pushed))
        self._guarded(recorder.finish)

    @staticmethod
    def _guarded(work: Callable[[], None]) -> None:
        """Run `work`; a bug is logged and the thread goes on (as the round loop does)."""
        try:
            work()
        except Exception:
            _LOG.exception("history writer: a step failed; the writer goes on")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
