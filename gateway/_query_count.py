"""Counts the history queries the gateway answers: seed 003's `query_requests_total`.

A query is an HTTP request to one of seed 003's query paths (`/api/v1/metrics/query`,
`query/range`, `query/instant`, `latest/{name}`, `aggregated`), whatever its answer; it is
counted as it arrives, in `GatewayState.stats.query_requests`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway._state import GatewayState

QUERY_PATHS = ("/api/v1/metrics/query", "/api/v1/metrics/latest/", "/api/v1/metrics/aggregated")
"""The path prefixes that are queries."""


class QueryCount:
    """ASGI middleware adding one to `query_requests` per request on a query path."""

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self._stats = state.stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request if it is a query, then pass it on."""
        if scope["type"] == "http" and scope["path"].startswith(QUERY_PATHS):
            self._stats.query_requests += 1
        await self.app(scope, receive, send)
