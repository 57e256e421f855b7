r"""Seed 003's `POST /auth/login`: a username and password in, a JWT out.

    curl -X POST http://localhost:8000/auth/login -H "Content-Type: application/json" \
      -d '{"username": "user", "password": "pass"}'
    {"access_token": "eyJ...", "token_type": "bearer", "expires_in": 3600}

The answer also sets the token as an HttpOnly, SameSite=Strict cookie (`COOKIE`), which the
gateway accepts on GET requests and WebSocket upgrades only: EventSource and WebSocket
cannot send headers, and a write always needs the header, so a forged cross-site write has
nothing to ride on. A failed login is 401; past `login_attempts_per_minute` failures in a
minute from one client or for one username, 429 before the password is even checked.
Failures are logged with the username and the client, never the password.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mesh_common.auth import Verifier
from mesh_common.clocks import ReadClock
from mesh_common.errors import TokenError

_LOG = logging.getLogger("gateway.auth")
PATH = "/auth/login"
"""Where logins are posted."""
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
    """The `POST /auth/login` route (module docstring); only with `[auth]` on."""
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
            COOKIE, token, max_age=int(ttl), httponly=True, samesite="strict", path="/"
        )
        return response

    return router
