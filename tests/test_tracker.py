from __future__ import annotations

import pytest

from agent import EventTracker
from tests.conftest import FakeClock


def test_steady_1000_per_second_for_a_minute_reads_1000(clock: FakeClock) -> None:
    tracker = EventTracker("svc", clock=clock)
    counter = tracker.counter("api_call")
    for _ in range(60_000):
        counter.record()
        clock.tick(0.001)
    reading = tracker.read()
    assert reading.events_per_second == pytest.approx(1000.0, rel=1e-9)
    assert reading.total_events == 60_000
