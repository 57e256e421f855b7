"""ASGI middleware counting and timing the HTTP requests an app serves into a tracker.

A pure ASGI middleware (a class taking the app it wraps, as starlette's own are), not a
`BaseHTTPMiddleware`: it adds no task, no request object and no response copy. Everything is
decided at construction; per request it notes the response status as it is sent, times the
app and observes once.

app.add_middleware(RequestCountMiddleware, tracker=tracker)  # kind "http_request"
app.add_middleware(RequestCountMiddleware, tracker=tracker, kind=http_route_kind)
                                                # kinds like "GET /items/{item_id}"
app.add_middleware(RequestCountMiddleware, tracker=tracker, failed=lambda status: status >= 400)
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
StatusClassifier = Callable[[int], bool]
"""Whether a response status means the request failed."""

DEFAULT_HTTP_KIND = "http_request"


def server_error(status: int) -> bool:
    """The default classifier: 5xx responses failed; 4xx are the client's, so they did not."""
    return status >= 500


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
    """Counts and times every HTTP request of the wrapped ASGI app into `tracker`.

    A request counts once, when the app is done with it, with the time the app took. It
    failed when the app raised (an unhandled exception), or when `failed(status)` is true for
    the response status: by default 5xx fail and 4xx do not (`failed` is asked once for each
    status 100..599 when the middleware is built, not per request). A request the client
    abandoned (cancelled) before any response counts without failing. `kind` is a fixed kind
    (default `"http_request"`) or a function of the finished request's scope (e.g.
    `http_route_kind`; its routing information is filled in by then). WebSocket sessions
    pass through uncounted unless `websocket_kind` names a kind for them (each session counts
    once, when it ends, failed when the app raised); lifespan and any other scope always pass
    through.
    """

    def __init__(
        self,
        app: ASGIApp,
        tracker: EventTracker,
        *,
        kind: str | KindOfScope = DEFAULT_HTTP_KIND,
        websocket_kind: str | None = None,
        failed: StatusClassifier = server_error,
    ) -> None:
        self.app = app
        self._tracker = tracker
        self._clock = tracker.clock
        # `failed` is asked once per status here rather than once per request.
        self._failing = frozenset(status for status in range(100, 600) if failed(status))
        if isinstance(kind, str):
            # A fixed kind: its counter's bound observe(), no kind lookup per request.
            fixed_kind = kind
            self._observe: Callable[..., None] | None = tracker.counter(kind).observe
            self._kind_of: KindOfScope = lambda scope: fixed_kind
        elif callable(kind):
            self._observe = None
            self._kind_of = kind
        else:
            raise TypeError(
                f"kind must be a kind name or a function of the ASGI scope, got {kind!r}"
            )
        self._observe_websocket: Callable[..., None] | None = (
            None if websocket_kind is None else tracker.counter(websocket_kind).observe
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection, counting it when it is an HTTP request.

        An HTTP request is served in this one coroutine (no inner one to await), with one
        small function noting the response status on its way out.
        """
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        status = 0

        def noting_status(message: Message) -> Awaitable[None]:
            # A plain function handing back send's own awaitable: no coroutine per message.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        started = self._clock()
        try:
            await self.app(scope, receive, noting_status)
        except Exception:
            failed = True
            raise
        except BaseException:  # cancelled: failed only if the response said so
            failed = status in self._failing
            raise
        else:
            failed = status in self._failing
        finally:
            seconds = self._clock() - started
            observe = self._observe
            if observe is not None:
                observe(seconds, error=failed)
            else:
                self._tracker.observe(self._kind_of(scope), seconds, error=failed)

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket session (counted when it has a kind) or any other scope (passed on)."""
        if scope["type"] == "websocket" and self._observe_websocket is not None:
            failed = True
            started = self._clock()
            try:
                await self.app(scope, receive, send)
                failed = False
            finally:
                self._observe_websocket(self._clock() - started, error=failed)
        else:
            await self.app(scope, receive, send)
