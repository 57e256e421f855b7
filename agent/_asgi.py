"""ASGI middleware counting the HTTP requests an app serves into a tracker.

A pure ASGI middleware (a class taking the app it wraps, as starlette's own are), not a
`BaseHTTPMiddleware`: it adds no task, no request object and no response copy. Everything is
decided at construction; per request it does one type check, calls the app and records once.

app.add_middleware(RequestCountMiddleware, tracker=tracker)  # kind "http_request"
app.add_middleware(RequestCountMiddleware, tracker=tracker, kind=http_route_kind)
                                                # kinds like "GET /items/{item_id}"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from agent._tracker import EventTracker

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KindOfScope = Callable[[Scope], str]

DEFAULT_HTTP_KIND = "http_request"

_KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
)


def http_route_kind(scope: Scope) -> str:
    """Kind `"METHOD /route/{template}"` of a finished request, e.g. `"GET /items/{item_id}"`.

    It reads the route the router matched (starlette and FastAPI record it in the scope), so
    path parameters do not multiply the kinds. A request no route matched (a 404) is
    `"METHOD (no route)"`, and a method outside the standard ones is `"OTHER"`, so a client
    cannot create kinds at will.
    """
    method = scope.get("method", "")
    if method not in _KNOWN_METHODS:
        method = "OTHER"
    path = getattr(scope.get("route"), "path", None)
    return f"{method} {path}" if isinstance(path, str) else f"{method} (no route)"


class RequestCountMiddleware:
    """Counts every HTTP request of the wrapped ASGI app into `tracker`.

    A request counts once, when the app is done with it: returned, raised or was cancelled.
    `kind` is a fixed kind (default `"http_request"`) or a function of the finished request's
    scope (e.g. `http_route_kind`; its routing information is filled in by then). WebSocket
    sessions pass through uncounted unless `websocket_kind` names a kind for them (each
    session counts once, when it ends); lifespan and any other scope always pass through.
    """

    def __init__(
        self,
        app: ASGIApp,
        tracker: EventTracker,
        *,
        kind: str | KindOfScope = DEFAULT_HTTP_KIND,
        websocket_kind: str | None = None,
    ) -> None:
        self.app = app
        self._tracker = tracker
        if isinstance(kind, str):
            fixed_kind = kind
            self._kind_of: KindOfScope = lambda scope: fixed_kind
            # The fast path: a bound method, no kind lookup per request.
            self._record_http: Callable[[], None] | None = tracker.counter(kind).record
        elif callable(kind):
            self._kind_of = kind
            self._record_http = None
        else:
            raise TypeError(
                f"kind must be a kind name or a function of the ASGI scope, got {kind!r}"
            )
        self._record_websocket: Callable[[], None] | None = (
            None if websocket_kind is None else tracker.counter(websocket_kind).record
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection, counting it when it is an HTTP request."""
        scope_type = scope["type"]
        if scope_type == "http":
            try:
                await self.app(scope, receive, send)
            finally:
                record = self._record_http
                if record is not None:
                    record()
                else:
                    self._tracker.record(self._kind_of(scope))
        elif scope_type == "websocket" and self._record_websocket is not None:
            try:
                await self.app(scope, receive, send)
            finally:
                self._record_websocket()
        else:
            await self.app(scope, receive, send)
