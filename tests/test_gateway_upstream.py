"""The gateway's one upstream subscription: backoff, logged state changes, restarts."""

from __future__ import annotations

import itertools
import logging

import pytest

from gateway._upstream import backoff
from tests.gateway_mesh import eventually, running_mesh


def test_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    top = list(itertools.islice(backoff(0.2, 5.0, lambda: 1.0), 7))
    assert top == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    bottom = list(itertools.islice(backoff(0.2, 5.0, lambda: 0.0), 7))
    assert bottom == pytest.approx([d / 2 for d in top])


async def test_state_changes_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.upstream")
    async with running_mesh() as mesh:
        await mesh.metrics()
        await mesh.stop_aggregator()
        hub = mesh.server.config.app.state.gateway.hub  # type: ignore[union-attr]

        async def retried() -> bool:
            return hub.state == "disconnected" and "connected -> disconnected" in caplog.text

        await eventually(retried, what="the disconnect to be logged")
        connects = hub.connects

        async def several_failures() -> bool:
            return hub.failed_attempts >= 3  # retried, and must not have warned again

        await eventually(several_failures, what="three failed attempts")
        await mesh.start_aggregator()

        async def reconnected() -> bool:
            return hub.state == "connected"

        await eventually(reconnected, what="the subscription to come back")
        assert hub.connects == connects + 1
        assert hub.failed_attempts == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.upstream"]
    assert sum("-> disconnected" in m for m in messages) == 1, messages
    assert sum("-> connected" in m for m in messages) == 2, messages  # start, then recovery
    # The new aggregator numbers its snapshots from 1 again: the gateway notices.
    assert any("restarted?" in m for m in messages), messages
