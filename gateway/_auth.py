"""The gateway's half of `[auth]`: one ASGI middleware in front of every route.

With `[auth]` on, every HTTP request and WebSocket needs a bearer token whose scopes cover
the call: `read` for everything, `write` for what changes state (any method but GET, HEAD
and OPTIONS, except the read-only `POST /api/v1/metrics/query` and `POST /auth/ticket`).
Open without a token: `/health/live`, `/health/ready`, CORS preflights, the dashboard's
page and files (`/`, `/static/...`: they hold no data, and the page must load to show its
sign-in form), `POST /auth/login` and `/auth/logout` (gateway._login) and, when
`public_consolidated`, story 23.2's `/api/v1/real-time-metrics`. No or a bad token: 401
with `WWW-Authenticate: Bearer`; a missing scope: 403 naming it. The caller's `Identity` is
left in `request.state` for the routes (`gateway._login.request_identity`).

Where a call's token comes from:
- the `Authorization: Bearer` header, always, and the only way for a write: a page of
  another site cannot make a browser add it, so a cross-site write (CSRF) is refused;
- for GET requests and WebSocket upgrades without the header, the login's HttpOnly,
  SameSite=Strict cookie (`gateway._login.COOKIE`): what a logged-in dashboard's
  EventSource and WebSocket carry, since they cannot send headers;
- on the two stream paths only (`STREAM_PATHS`: SSE and the WebSocket), a single-use
  `?ticket=` from `POST /auth/ticket` (gateway._tickets), spent here on first use: how a
  page holding an API token opens its streams without putting the token in a URL.
"""

from __future__ import annotations

import logging
import urllib.parse
from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway._limits import _answer, _header
from gateway._login import COOKIE, IDENTITY, LOGOUT
from gateway._login import PATH as LOGIN
from gateway._sse import PATH as SSE_PATH
from gateway._tickets import PATH as TICKET
from gateway._tickets import QUERY as TICKET_QUERY
from gateway._tickets import TicketBook
from gateway._ws import PATH as WS_PATH
from mesh_common.auth import Identity, Verifier, bearer_token
from mesh_common.errors import AuthError, ScopeError, TokenError

_LOG = logging.getLogger("gateway.auth")
OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/", LOGIN, LOGOUT})
"""Paths that never need a token."""
OPEN_PREFIXES = ("/static/",)
"""Path prefixes that never need a token: the dashboard's files."""
STREAM_PATHS = frozenset({SSE_PATH, WS_PATH})
"""Where a `?ticket=` is accepted (GET and WebSocket upgrades only)."""
CONSOLIDATED = "/api/v1/real-time-metrics"
"""Story 23.2's endpoint: open when `public_consolidated`."""
READ_POSTS = frozenset({"/api/v1/metrics/query", TICKET})
"""POST routes that only read (seed 003's query) or need no more (a stream ticket)."""
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


def _query_ticket(scope: Scope) -> str | None:
    query: bytes = scope.get("query_string", b"")
    if TICKET_QUERY.encode() not in query:
        return None
    values = urllib.parse.parse_qs(query.decode("latin-1")).get(TICKET_QUERY)
    if not values:
        return None
    if len(values) > 1:
        raise TokenError("one stream ticket at a time")
    return values[0]


class Authenticate:
    """Checks each request's token and scope before `app` sees it (module docstring)."""

    def __init__(self, app: ASGIApp, verifier: Verifier, tickets: TicketBook) -> None:
        self.app = app
        self._verifier = verifier
        self._tickets = tickets
        self._open = OPEN_PATHS | (
            {CONSOLIDATED} if verifier.settings.public_consolidated else set()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        if path in self._open or method == "OPTIONS" or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        needed = "read" if method in READ_METHODS or path in READ_POSTS else "write"
        try:
            identity = self._identify(scope, path, method)
            identity.require(needed)
        except AuthError as error:
            await self._refuse(scope, send, error)
            return
        scope.setdefault("state", {})[IDENTITY] = identity
        await self.app(scope, receive, send)

    def _identify(self, scope: Scope, path: str, method: str) -> Identity:
        header = _header(scope, b"authorization")
        if header is None and method in READ_METHODS:
            if path in STREAM_PATHS:
                ticket = _query_ticket(scope)
                if ticket is not None:
                    return self._tickets.redeem(ticket)
            cookie = _cookie_token(scope)  # browsers' streams; never for a write
            if cookie:
                return self._verifier.identify(cookie)
        return self._verifier.identify(bearer_token(header))

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


def authenticate(app: ASGIApp, verifier: Verifier | None, tickets: TicketBook) -> ASGIApp:
    """`app` behind the token check when `[auth]` is on (`verifier`), else `app` itself.

    `tickets`: the stream tickets `POST /auth/ticket` issues, redeemed here.
    """
    return app if verifier is None else Authenticate(app, verifier, tickets)
