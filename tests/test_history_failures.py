"""A history store that fails never stops the rounds: a bounded buffer, a count, a reason.

Three failures as an operator meets them: the file is read-only, a directory sits where the
file should be, the disk is full (a tiny `PRAGMA max_page_count`). Rounds go on; up to
`retry_buffer_rounds` rounds wait and are retried; later ones are dropped and counted (their
events are counted by the next round kept); the reason is in the writer's status; the log says
so at most once a minute. The last two (a second aggregator on the same store, a damaged
round) run on both backends; PostgreSQL's own failures are in test_history_postgres.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator._history import HistoryStoreError, SeriesKey, parse_tiers
from aggregator._history.memory import OpenChunks
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.sqlite import SqliteStore
from aggregator._history.tiers import DEFAULT_TIERS
from tests.history_backends import HistoryBackend
from tests.history_mesh import (
    agents,
    fake_clocks,
    history_server,
    registry_of,
    run_round,
    stored_events,
    tick,
    tracker,
    wire_snapshot,
    writer_of,
)

TIERS = parse_tiers(DEFAULT_TIERS)
API = SeriesKey("orders-api", "api_call")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` cannot be written, even by root (chattr +i), until the block ends."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a file read-only")
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


async def test_rounds_go_on_while_the_history_file_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    SqliteStore(path, TIERS).close()  # an existing history file, read-only from the start
    monotonic, wall, clocks = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    with contextlib.ExitStack() as locked:
        locked.enter_context(read_only(path))
        async with (
            agents([orders]) as servers,
            history_server(registry_of(servers), path, clocks, retry_buffer_rounds=3) as server,
        ):
            writer = writer_of(server)
            for _ in range(6):
                tick(monotonic, wall, 1.0)
                orders.record("api_call", n=2)
                assert (await run_round(server)).active_count == 1  # the rounds go on
            status = writer.status()
            assert "attempt to write a readonly database" in status.degraded_reason
            assert str(path) in status.degraded_reason
            assert (status.buffered_rounds, status.dropped_rounds) == (3, 3)
            assert status.rounds_written == 0
            locked.close()  # writable again
            tick(monotonic, wall, 1.0)
            orders.record("api_call")
            await run_round(server)  # the buffer is written, then this round
            status = writer.status()
            assert (status.degraded_reason, status.buffered_rounds) == ("", 0)
            assert (status.rounds_written, status.dropped_rounds) == (4, 3)
            # The dropped rounds' events were counted by the next round kept: none is missing.
            assert stored_events(writer, API, TIERS[0]) == 13


def test_a_directory_where_the_file_should_be_buffers_then_drops_and_says_so_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.sqlite3"
    path.mkdir()
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    memory = OpenChunks(TIERS)
    recorder = Recorder(
        lambda: SqliteStore(path, TIERS), memory, buffer_rounds=50, monotonic=monotonic
    )
    caplog.set_level(logging.INFO, logger="aggregator.history")
    recorder.open()
    for _ in range(150):  # 150 s of rounds
        tick(monotonic, wall, 1.0)
        orders.record("api_call")
        recorder.record(wire_snapshot(wall(), [orders]))
    assert recorder.degraded.startswith("cannot open the history store")
    assert str(path) in recorder.degraded
    assert (recorder.buffered, recorder.dropped) == (50, 100)
    assert len([r for r in caplog.records if "cannot open" in r.getMessage()]) <= 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 2 <= len(warnings) <= 3  # one per minute at most: at 0, 60 and 120 s
    assert "history degraded: cannot open" in warnings[0].getMessage()
    # The buffered rounds are readable meanwhile (from memory).
    reader = HistoryReader(memory)
    assert len(reader.read([API], TIERS[0], 0, 2**62)[API]) == 50
    path.rmdir()
    tick(monotonic, wall, 10.0)  # opening is tried again 10 s after the last try
    recorder.record(wire_snapshot(wall(), [orders]))
    assert (recorder.degraded, recorder.buffered, recorder.rounds_written) == ("", 0, 51)
    assert "written again" in caplog.records[-1].getMessage()
    samples = reader.read([API], TIERS[0], 0, 2**62)[API]
    assert sum(sample.events for sample in samples) == 150  # nothing lost but time resolution
    recorder.finish()


def test_a_full_disk_keeps_the_rounds_going_and_drops_what_does_not_fit(tmp_path: Path) -> None:
    monotonic, wall, _ = fake_clocks()
    fleet = [tracker(f"svc-{index}", monotonic, wall) for index in range(20)]
    memory = OpenChunks(TIERS)
    recorder = Recorder(
        lambda: SqliteStore(tmp_path / "history.sqlite3", TIERS, max_page_count=40),
        memory,
        buffer_rounds=20,
        monotonic=monotonic,
    )
    recorder.open()
    written = []
    for round_number in range(400):
        tick(monotonic, wall, 1.0)
        for index, each in enumerate(fleet):
            for kind in ("api_call", "data_fetch", "inference"):
                each.observe(kind, 0.001 * (1 + (round_number + index) % 40))
        recorder.record(wire_snapshot(wall(), fleet))
        written.append(recorder.rounds_written)
    assert "database or disk is full" in recorder.degraded
    assert recorder.buffered <= 20  # the head rows waiting; or they were written, the seals fail
    assert recorder.dropped > 100
    assert written[-1] == written[-200] > 0  # nothing written for the last 200 rounds
    recorder.finish()


def test_a_second_aggregator_on_the_same_store_is_told_it_is_in_use(
    history_backend: HistoryBackend,
) -> None:
    first = history_backend.open()
    try:
        with pytest.raises(HistoryStoreError, match="in use by another aggregator"):
            history_backend.open()
    finally:
        first.close()
    history_backend.open().close()  # free again once the first one closed it


def test_a_damaged_round_in_the_head_is_skipped_and_the_rest_comes_back(
    history_backend: HistoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    recorder = Recorder(
        history_backend.opener(), OpenChunks(TIERS), buffer_rounds=5, monotonic=monotonic
    )
    recorder.open()
    for _ in range(30):  # all in the head (the first seal comes after two minutes)
        tick(monotonic, wall, 1.0)
        orders.record("api_call", n=2)
        recorder.record(wire_snapshot(wall(), [orders]))
    recorder.finish()
    history_backend.damage_head_row(10)  # one round's row damaged on disk
    memory = OpenChunks(TIERS)
    recorder = Recorder(history_backend.opener(), memory, buffer_rounds=5, monotonic=monotonic)
    recorder.open()
    assert recorder.degraded == ""
    assert "cannot be read back" in caplog.text
    tick(monotonic, wall, 1.0)
    recorder.record(wire_snapshot(wall(), [orders]))
    samples = HistoryReader(memory).read([API], TIERS[0], 0, 2**62)[API]
    assert len(samples) == 30  # 29 rounds back from the head, and the new one
    # The cursors are rebuilt without the damaged round: the next round counts its events.
    assert [sample.events for sample in samples[-2:]] == [2, 2]
    assert sum(sample.events for sample in samples) == 60
    recorder.finish()
