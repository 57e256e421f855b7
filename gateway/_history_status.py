"""The aggregator's history status as the gateway last read it, for /metrics and /health/detailed.

`HistoryStatusPoller` asks GetHistoryStatus every `POLL_SECONDS` (on the alert hub's channel),
never per scrape: /metrics and /health/detailed read what it holds. It knows four states:
`unknown` (not asked yet, or the aggregator is unreachable), `disabled` (the aggregator keeps no
history: FAILED_PRECONDITION), `ok` and `degraded` (the aggregator's degraded reason is set;
`message()` says "history degraded: <reason>").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from metricsmesh.v1 import history_pb2

from gateway._alerts import AlertHub
from gateway._errors import GatewayError

_LOG = logging.getLogger("gateway.history")

POLL_SECONDS = 5.0
"""Seconds between two GetHistoryStatus calls."""
CALL_TIMEOUT_SECONDS = 5.0


class HistoryStatusPoller:
    """The latest GetHistoryStatus answer (see the module doc); `start()`, `stop()`."""

    def __init__(self, hub: AlertHub, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._hub = hub
        self._poll_seconds = poll_seconds
        self.status: history_pb2.GetHistoryStatusResponse | None = None
        """The last answer (None until one came, or since history turned out disabled)."""
        self.state = "unknown"
        self.error = "not asked yet"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling in the running loop (a second call is harmless)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="history status")

    async def stop(self) -> None:
        """Stop polling; a second call is harmless."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def message(self) -> str:
        """One line for people: "history ok", "history degraded: <reason>", ..."""
        if self.state == "degraded" and self.status is not None:
            return f"history degraded: {self.status.degraded_reason}"
        if self.state == "ok":
            return "history ok"
        if self.state == "disabled":
            return "history disabled on the aggregator"
        return f"history status unknown: {self.error}"

    async def poll(self) -> None:
        """Ask once and keep the answer (or why there is none)."""
        request = history_pb2.GetHistoryStatusRequest()
        try:
            stub: Any = self._hub.stub  # an aio channel's stub: its calls are awaitable
            status = await stub.GetHistoryStatus(request, timeout=CALL_TIMEOUT_SECONDS)
        except GatewayError as error:
            self.state, self.error, self.status = "unknown", str(error), None
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                self.state, self.error = "disabled", error.details() or ""
            else:
                self.state = "unknown"
                self.error = f"GetHistoryStatus: {code.name if code else 'UNKNOWN'}"
            self.status = None
        else:
            self.status = status
            self.state = "degraded" if status.degraded_reason else "ok"
            self.error = ""

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # a bug must not end the polling
                _LOG.exception("history status poll failed")
            await asyncio.sleep(self._poll_seconds)
