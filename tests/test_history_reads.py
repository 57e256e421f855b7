"""Reading while the writer seals: every sample once, none missing, from any thread.

A reader thread reads the history over and over while the recorder writes rounds and seals
(every 120 rounds) on the main thread; each read must hold every round written before it
started, in order, none twice, in the finest tier and in the 1 min tier rolled up on read,
on each backend.
"""

from __future__ import annotations

import threading

from aggregator._history import SeriesKey, parse_tiers
from aggregator._history.memory import OpenChunks
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.tiers import DEFAULT_TIERS
from tests.history_backends import HistoryBackend
from tests.history_mesh import fake_clocks, tick, tracker, wire_snapshot

TIERS = parse_tiers(DEFAULT_TIERS)
SERVICE = SeriesKey("orders-api", "")


def test_reads_during_seals_see_every_round_once(history_backend: HistoryBackend) -> None:
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    memory = OpenChunks(TIERS)
    recorder = Recorder(history_backend.opener(), memory, buffer_rounds=10, monotonic=monotonic)
    recorder.open()
    reader = HistoryReader(memory)
    written = [0]
    problems: list[str] = []
    reads = [0]
    done = threading.Event()

    def read_again_and_again() -> None:
        while not done.is_set():
            before = written[0]
            samples = reader.read([SERVICE], TIERS[0], 0, 2**62).get(SERVICE, [])
            times = [sample.time_ms for sample in samples]
            if times != sorted(set(times)) or len(times) < before:
                problems.append(f"{len(times)} rounds read, {before} written: {times[-3:]}")
            minutes = reader.read([SERVICE], TIERS[1], 0, 2**62).get(SERVICE, [])
            if sum(getattr(s, "rounds", 0) for s in minutes) < before:
                problems.append(f"the 1 min tier holds fewer than {before} rounds")
            reads[0] += 1

    thread = threading.Thread(target=read_again_and_again)
    thread.start()
    try:
        for _ in range(700):  # five seals
            tick(monotonic, wall, 1.0)
            orders.record("api_call")
            recorder.record(wire_snapshot(wall(), [orders]))
            written[0] += 1
    finally:
        done.set()
        thread.join()
        recorder.finish()
    assert problems == []
    assert reads[0] > 10
