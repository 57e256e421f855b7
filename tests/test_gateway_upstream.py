"""The gateway's one upstream subscription: backoff, logged state changes, restarts."""

from __future__ import annotations

import itertools
import logging

import pytest

from gateway._link import backoff
from tests.eventually import eventually
from tests.gateway_mesh import running_mesh


def test_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    top = list(itertools.islice(backoff(0.2, 5.0, lambda: 1.0), 7))
    assert top == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    bottom = list(itertools.islice(backoff(0.2, 5.0, lambda: 0.0), 7))
    assert bottom == pytest.approx([d / 2 for d in top])


async def test_an_outage_warns_once_and_recovery_resumes_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.upstream")
    async with running_mesh() as mesh:
        before = await mesh.metrics()
        await mesh.stop_aggregator()

        async def disconnected() -> dict[str, object] | None:
            upstream = (await mesh.http.get("/health/detailed")).json()["upstream"]
            return upstream if upstream["state"] == "disconnected" else None

        first = await eventually(disconnected, what="the gateway to see the outage")

        async def several_failures() -> dict[str, object] | None:
            upstream = await disconnected()
            return upstream if upstream and int(upstream["failed_attempts"]) >= 3 else None

        await eventually(several_failures, what="three failed attempts")
        await mesh.start_aggregator()

        async def reconnected() -> dict[str, object] | None:
            upstream = (await mesh.http.get("/health/detailed")).json()["upstream"]
            return upstream if upstream["state"] == "connected" else None

        after = await eventually(reconnected, what="the subscription to come back")
        assert after["connects"] == int(first["connects"]) + 1
        assert after["failed_attempts"] == 0
        # The new aggregator numbers its snapshots from 1 again: the gateway serves them
        # (fresh, so not stuck on the old lifetime's higher numbers).
        body = await mesh.metrics()
        assert mesh.aggregator is not None
        assert before["sequence"] > 0
        assert body["sequence"] <= mesh.aggregator.rounds
    warnings = [
        record
        for record in caplog.records
        if record.name == "gateway.upstream" and record.levelno >= logging.WARNING
    ]
    # One warning for the outage and one for the restarted numbering, not one per retry.
    assert len(warnings) == 2, [record.getMessage() for record in warnings]
