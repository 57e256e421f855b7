"""Delivery of alerts to Prometheus Alertmanager (API v2) and to a plain webhook.

`Delivery.send(alerts)` posts the given alerts (as Alertmanager wants them: labels,
annotations, startsAt, endsAt, generatorURL) to every configured Alertmanager, and the same
alerts as Alertmanager's webhook payload to the webhook. A firing alert's endsAt is now plus
4 x the resend interval, as Prometheus sends them, so Alertmanager resolves it by itself if
the aggregator goes away; a resolved one's is its resolve time. The manager calls `send` on
every change and re-sends every firing (and recently resolved) alert each resend interval.
A failing endpoint is retried with backoff in the background and logged once per outage; no
send ever delays a round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from aggregator._alerts.engine import Alert, State
from mesh_common.wire_time import iso_utc

_LOG = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
TIMEOUT_SECONDS = 5.0


def alertmanager_alert(
    alert: Alert, *, now: float, resend_interval: float, dashboard_url: str
) -> dict[str, Any]:
    """One alert in Alertmanager's API v2 form (`POST /api/v2/alerts`)."""
    ends = alert.resolved_time if alert.state is State.RESOLVED else now + 4 * resend_interval
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": iso_utc(alert.fired_time or alert.active_time),
        "endsAt": iso_utc(ends or now),
        "generatorURL": dashboard_url,
    }


def webhook_payload(alerts: Sequence[dict[str, Any]], states: Sequence[State]) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4) for `alerts`."""
    firing = any(state is State.FIRING for state in states)
    return {
        "version": "4",
        "groupKey": "metrics-mesh",
        "status": "firing" if firing else "resolved",
        "receiver": "metrics-mesh",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": [
            {**item, "status": "firing" if state is State.FIRING else "resolved"}
            for item, state in zip(alerts, states, strict=True)
        ],
    }


@dataclass
class _Endpoint:
    """One URL to post to, and its retry state."""

    url: str
    receiver: str
    """What listens at the URL: "alertmanager" (API v2) or "webhook"."""
    failures: int = 0
    pending: list[Alert] = field(default_factory=list)
    """Alerts whose last post failed, re-sent at the next attempt (latest per id)."""


class Delivery:
    """Posts alerts to the configured endpoints; every post runs in a task of its own."""

    def __init__(
        self,
        alertmanagers: Sequence[str],
        webhook_url: str,
        *,
        resend_interval: float,
        dashboard_url: str,
        wall: Callable[[], float],
    ) -> None:
        self._endpoints = [_Endpoint(url.rstrip("/"), "alertmanager") for url in alertmanagers]
        if webhook_url:
            self._endpoints.append(_Endpoint(webhook_url, "webhook"))
        self._resend = resend_interval
        self._dashboard = dashboard_url
        self._wall = wall
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        """How many posts succeeded (for tests and /metrics)."""

    @property
    def configured(self) -> bool:
        """True when there is anywhere to send to."""
        return bool(self._endpoints)

    def send(self, alerts: Sequence[Alert]) -> None:
        """Post `alerts` to every endpoint, in the background."""
        if not alerts or not self._endpoints:
            return
        for endpoint in self._endpoints:
            task = asyncio.get_running_loop().create_task(self._post(endpoint, list(alerts)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel the posts in flight and close the HTTP client; a second call is harmless."""
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _post(self, endpoint: _Endpoint, alerts: list[Alert]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
        by_id = {alert.id: alert for alert in (*endpoint.pending, *alerts)}
        endpoint.pending = []
        batch = list(by_id.values())
        now = self._wall()
        items = [
            alertmanager_alert(
                alert, now=now, resend_interval=self._resend, dashboard_url=self._dashboard
            )
            for alert in batch
        ]
        body: object = items
        url = f"{endpoint.url}/api/v2/alerts"
        if endpoint.receiver == "webhook":
            url, body = endpoint.url, webhook_payload(items, [alert.state for alert in batch])
        try:
            response = await self._client.post(url, json=body)
            response.raise_for_status()
        except httpx.HTTPError as error:
            self._failed(endpoint, batch, error)
            return
        if endpoint.failures:
            _LOG.info("alert delivery to %s works again", endpoint.url)
        endpoint.failures = 0
        self.sent += 1

    def _failed(self, endpoint: _Endpoint, batch: list[Alert], error: Exception) -> None:
        endpoint.failures += 1
        endpoint.pending = batch
        if endpoint.failures == 1:
            _LOG.warning(
                "alert delivery to %s failed (%s); retrying with backoff", endpoint.url, error
            )
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (endpoint.failures - 1))
        task = asyncio.get_running_loop().create_task(self._retry(endpoint, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, endpoint: _Endpoint, delay: float) -> None:
        await asyncio.sleep(delay)
        if endpoint.pending:
            await self._post(endpoint, [])
