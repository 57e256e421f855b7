"""The writer as the round loop sees it: observe() never waits; close() writes what is queued.

Each on both backends.
"""

from __future__ import annotations

import threading
import time

from aggregator._convert import WholeSnapshots
from aggregator._history import HistoryStore, HistoryWriter, parse_tiers
from aggregator._history.tiers import DEFAULT_TIERS
from aggregator._model import SnapshotData
from tests.history_backends import HistoryBackend
from tests.history_mesh import EPOCH, fake_clocks

TIERS = parse_tiers(DEFAULT_TIERS)


def snapshot(sequence: int) -> SnapshotData:
    """A round with no row (the history keeps its time only)."""
    return SnapshotData(sequence, EPOCH + sequence, 0.0, 0.0, (), 0, 0, 0, 0, 0.0, 0.0, 0, ())


async def test_a_writer_that_falls_behind_drops_rounds_without_delaying_one(
    history_backend: HistoryBackend,
) -> None:
    release = threading.Event()

    def slow_store() -> HistoryStore:
        release.wait(10)  # the worker is stuck (a slow disk) until the test lets it go
        return history_backend.open()

    _, _, clocks = fake_clocks()
    writer = HistoryWriter(slow_store, TIERS, whole=WholeSnapshots(), clocks=clocks)
    writer.start()
    started = time.perf_counter()
    for sequence in range(1, 7):
        await writer.observe(snapshot(sequence))
    assert time.perf_counter() - started < 0.5  # six rounds handed over, none waited
    assert writer.status().dropped_rounds == 4  # the queue holds 2 s of rounds: 2 here
    release.set()
    await writer.flush()
    status = writer.status()
    assert (status.rounds_written, status.dropped_rounds, status.degraded_reason) == (2, 4, "")
    await writer.close()


async def test_close_writes_the_last_round_and_what_is_queued(
    history_backend: HistoryBackend,
) -> None:
    _, _, clocks = fake_clocks()
    writer = HistoryWriter(history_backend.opener(), TIERS, whole=WholeSnapshots(), clocks=clocks)
    writer.start()
    await writer.observe(snapshot(1))
    await writer.close(snapshot(2))  # the newest round, not yet seen by the observer
    await writer.close(snapshot(3))  # a second close changes nothing
    assert writer.status().rounds_written == 2
    store = history_backend.open()
    try:
        assert [time_ms for time_ms, _ in store.head()] == [
            int((EPOCH + 1) * 1000),
            int((EPOCH + 2) * 1000),
        ]
    finally:
        store.close()
