"""The gateway's half of `[auth]`: one ASGI middleware in front of every route.

With `[auth]` on, every HTTP request and WebSocket needs a bearer token whose scopes cover
the call: `read` for everything, `write` for what changes state (any method but GET, HEAD
and OPTIONS, except the read-only `POST /api/v1/metrics/query`). Open without a token:
`/health/live`, `/health/ready`, CORS preflights, `POST /auth/login` (gateway._login) and,
when `public_consolidated`, story 23.2's `/api/v1/real-time-metrics`. No or a bad token:
401 with `WWW-Authenticate: Bearer`; a missing scope: 403 naming it. GET requests and
WebSocket upgrades may carry the token in the login's HttpOnly cookie instead.
"""

from __future__ import annotations

import logging
from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway._limits import _answer, _header
from gateway._login import COOKIE
from gateway._login import PATH as LOGIN
from mesh_common.auth import Verifier, bearer_token
from mesh_common.errors import AuthError, ScopeError

_LOG = logging.getLogger("gateway.auth")
OPEN_PATHS = frozenset({"/health/live", "/health/ready"})
"""Paths that never need a token."""
CONSOLIDATED = "/api/v1/real-time-metrics"
"""Story 23.2's endpoint: open when `public_consolidated`."""
READ_POSTS = frozenset({"/api/v1/metrics/query"})
"""POST routes that only read (seed 003's query)."""
READ_METHODS = frozenset({"GET", "HEAD"})


def _cookie_token(scope: Scope) -> str | None:
    text = _header(scope, b"cookie")
    if not text:
        return None
    try:
        morsel = SimpleCookie(text).get(COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel is not None else None


class Authenticate:
    """Checks each request's token and scope before `app` sees it (module docstring)."""

    def __init__(self, app: ASGIApp, verifier: Verifier) -> None:
        self.app = app
        self._verifier = verifier
        self._open = (
            OPEN_PATHS
            | {LOGIN}
            | ({CONSOLIDATED} if verifier.settings.public_consolidated else set())
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        if path in self._open or method == "OPTIONS":
            await self.app(scope, receive, send)
            return
        needed = "read" if method in READ_METHODS or path in READ_POSTS else "write"
        try:
            self._verifier.identify(self._token(scope, method)).require(needed)
        except AuthError as error:
            await self._refuse(scope, send, error)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _token(scope: Scope, method: str) -> str:
        header = _header(scope, b"authorization")
        if header is None and method in READ_METHODS:
            cookie = _cookie_token(scope)  # browsers' streams; never for a write
            if cookie:
                return cookie
        return bearer_token(header)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: AuthError) -> None:
        _LOG.info("refused %s %s: %s", scope.get("method", "WS"), scope["path"], error)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": str(error)[:120]})
            return
        if isinstance(error, ScopeError):
            challenge = f'Bearer error="insufficient_scope", scope="{error.scope}"'
            await _answer(send, 403, str(error), [(b"www-authenticate", challenge.encode())])
            return
        await _answer(send, 401, str(error), [(b"www-authenticate", b"Bearer")])


def authenticate(app: ASGIApp, verifier: Verifier | None) -> ASGIApp:
    """`app` behind the token check when `[auth]` is on (`verifier`), else `app` itself."""
    return app if verifier is None else Authenticate(app, verifier)
