"""Shared fixtures: a controllable clock for exact, sleep-free timing tests, and a real mesh."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.gateway_mesh import Mesh, running_mesh


class FakeClock:
    """A clock that only moves when told to: `clock()` reads it, `tick(s)` advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    """15 real agents, an aggregator and the gateway on ephemeral ports, the first snapshot in.

    A test module that needs another mesh (other settings, nothing awaited) defines its own.
    """
    async with running_mesh() as running:
        await running.metrics()
        yield running
