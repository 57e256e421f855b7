r"""The browser's session with the gateway: seed 003's `POST /auth/login`, its logout, who it is.

    curl -X POST http://localhost:8000/auth/login -H "Content-Type: application/json" \
      -d '{"username": "user", "password": "pass"}'
    {"access_token": "eyJ...", "token_type": "bearer", "expires_in": 3600}

The answer also sets the token as an HttpOnly, SameSite=Strict cookie (`COOKIE`; Secure over
HTTPS), which the gateway accepts on GET requests and WebSocket upgrades only: EventSource
and WebSocket cannot send headers, and a write always needs the header, so a forged
cross-site write has nothing to ride on. A failed login is 401; past
`login_attempts_per_minute` failures in a minute from one client or for one username, 429
before the password is even checked. Failures are logged with the username and the client,
never the password.

`POST /auth/logout` clears the cookie (JavaScript cannot: it is HttpOnly); it needs no token,
but a browser's request must come from the gateway's own origin. `GET /auth/identity` says
who the caller's credentials speak for, and whether `[auth]` is on at all: the dashboard asks
it first and shows its sign-in form on a 401. The auth check (gateway._auth) hands the
caller's identity to the routes in `request.state` (`request_identity`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway._limits import origin_allowed
from mesh_common.auth import Identity, Verifier
from mesh_common.auth_settings import ALL_SCOPES
from mesh_common.clocks import ReadClock
from mesh_common.errors import TokenError

_LOG = logging.getLogger("gateway.auth")
PATH = "/auth/login"
"""Where logins are posted."""
LOGOUT = "/auth/logout"
"""Where a browser signs out (the cookie is cleared)."""
IDENTITY_PATH = "/auth/identity"
"""Who the caller is (and whether `[auth]` is on)."""
IDENTITY = "identity"
"""The key of `request.state` where the auth check leaves the caller's `Identity`."""
COOKIE = "mesh_token"
"""The cookie holding the token for browsers' streams."""
WINDOW_SECONDS = 60.0
"""The span failures are counted over."""
NO_STORE = {"cache-control": "no-store"}
"""A token answer is never cached."""
MAX_TRACKED = 4096
"""Clients and usernames whose failures are kept; the idlest go first."""


class FailureCounter:
    """Failures per key over the last minute: `blocked(key)` once there are `limit` of them."""

    def __init__(self, limit: int, monotonic: ReadClock) -> None:
        self._limit = limit
        self._monotonic = monotonic
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, key: str) -> bool:
        """True when `key` failed `limit` times within the window."""
        times = self._failures.get(key)
        if times is None:
            return False
        horizon = self._monotonic() - WINDOW_SECONDS
        while times and times[0] <= horizon:
            times.popleft()
        return len(times) >= self._limit

    def fail(self, key: str) -> None:
        """Count one failure of `key`."""
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= MAX_TRACKED:
                self._failures.popitem(last=False)
            times = self._failures[key] = deque(maxlen=self._limit)
        self._failures.move_to_end(key)
        times.append(self._monotonic())


class LoginIn(BaseModel):
    """Seed 003's login body."""

    username: str = Field(max_length=256, description="a `[[auth.users]]` username")
    password: str = Field(max_length=1024, description="its password")


class LoginOut(BaseModel):
    """A token for `Authorization: Bearer ...`."""

    access_token: str = Field(description="a signed JWT (HS256)")
    token_type: str = Field("bearer", description="always `bearer`")
    expires_in: int = Field(description="seconds the token is valid for")


def _refusal(status: int, detail: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse({"detail": detail}, status, headers={**headers, **NO_STORE})


def login_router(verifier: Verifier, monotonic: ReadClock) -> APIRouter:
    """`POST /auth/login` and `POST /auth/logout` (module docstring); only with `[auth]` on."""
    router = APIRouter(tags=["auth"])
    limit = verifier.settings.login_attempts_per_minute
    clients, users = FailureCounter(limit, monotonic), FailureCounter(limit, monotonic)

    @router.post(
        PATH,
        response_model=LoginOut,
        responses={401: {"description": "unknown username or wrong password"},
                   429: {"description": "too many failed logins from this client or user"}},
        summary="Log in (seed 003): a bearer token for a configured user",
    )  # fmt: skip
    async def login(body: LoginIn, request: Request) -> JSONResponse:
        client = request.client.host if request.client else ""
        username = body.username
        if clients.blocked(client) or users.blocked(username):
            _LOG.warning("login refused (too many failures): user %.64r from %s", username, client)
            retry = {"retry-after": str(int(WINDOW_SECONDS))}
            return _refusal(429, "too many failed logins; retry in a minute", retry)
        try:
            # scrypt takes tens of milliseconds (and frees the GIL): off the event loop.
            identity = await asyncio.to_thread(verifier.login, username, body.password)
        except TokenError as error:
            clients.fail(client)
            users.fail(username)
            _LOG.warning("login failed: user %.64r from %s", username, client)
            return _refusal(401, str(error), {"www-authenticate": "Bearer"})
        token, ttl = verifier.issue(identity)
        _LOG.info("login: user %.64r from %s", identity.name, client)
        answer = LoginOut(access_token=token, token_type="bearer", expires_in=int(ttl))
        response = JSONResponse(answer.model_dump(), headers=NO_STORE)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(ttl),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    router.add_api_route(
        LOGOUT,
        logout,
        methods=["POST"],
        status_code=204,
        response_class=Response,
        responses={403: {"description": "the request came from another origin"}},
        summary="Log out: clear the login's cookie",
    )
    return router


async def logout(request: Request) -> Response:
    """Clears the login's HttpOnly cookie (the token itself stays valid until it expires).

    Needs no token; a browser's request (one with an `Origin`) must come from this origin.
    """
    if not origin_allowed(request.headers.get("origin"), request.headers.get("host"), ()):
        return _refusal(403, "a logout must come from the gateway's own pages", {})
    response = Response(status_code=204, headers=NO_STORE)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


class IdentityOut(BaseModel):
    """Who the caller's credentials speak for."""

    authentication: bool = Field(description="false when `[auth]` is off: every call is open")
    name: str = Field(default="", description="a user, an API token's name or a JWT's `sub`")
    scopes: list[str] = Field(
        default_factory=list, description="`read`, `write`, `admin`, `gateway`: those it has"
    )


def request_identity(request: Request) -> Identity:
    """Who the auth check let `request` through as; TokenError when it did not run."""
    identity = getattr(request.state, IDENTITY, None)
    if not isinstance(identity, Identity):
        raise TokenError("no identity: the auth check did not run")
    return identity


def identity_router(authentication: bool) -> APIRouter:
    """`GET /auth/identity` (module docstring), with `[auth]` on (`authentication`) or off."""
    router = APIRouter(tags=["auth"])

    @router.get(
        IDENTITY_PATH,
        response_model=IdentityOut,
        responses={401: {"description": "no credentials, or bad ones (`[auth]` is on)"}},
        summary="Who the caller is, and whether authentication is on",
    )
    async def identity(request: Request) -> JSONResponse:
        """The identity of the token (header or login cookie) and its scopes.

        With `[auth]` off: `{"authentication": false}`. The dashboard asks this first.
        """
        if not authentication:
            return JSONResponse(IdentityOut(authentication=False).model_dump(), headers=NO_STORE)
        who = request_identity(request)
        scopes = [scope for scope in ALL_SCOPES if scope in who.scopes]
        body = IdentityOut(authentication=True, name=who.name, scopes=scopes)
        return JSONResponse(body.model_dump(), headers=NO_STORE)

    return router
