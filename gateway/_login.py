r"""Seed 003's `POST /auth/login`: a username and password in, a JWT out.

    curl -X POST http://localhost:8000/auth/login -H "Content-Type: application/json" \\
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

import logging
from collections import OrderedDict, deque

import orjson
from starlette.types import Receive, Scope, Send

from mesh_common.auth import TokenError, Verifier
from mesh_common.clocks import ReadClock

_LOG = logging.getLogger("gateway.auth")
PATH = "/auth/login"
"""Where logins are posted."""
COOKIE = "mesh_token"
"""The cookie holding the token for browsers' streams."""
WINDOW_SECONDS = 60.0
"""The span failures are counted over."""
MAX_BODY_BYTES = 4096
"""The largest login body read."""
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


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ValueError(f"a login body is at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _credentials(body: bytes) -> tuple[str, str]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError('the body must be JSON: {"username": ..., "password": ...}') from None
    if not isinstance(value, dict):
        raise ValueError("the body must be a JSON object with username and password")
    username, password = value.get("username"), value.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ValueError("username and password must be strings")
    return username, password


async def _send_json(
    send: Send, status: int, value: object, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(value)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Login:
    """The `POST /auth/login` endpoint (module docstring)."""

    def __init__(self, verifier: Verifier, monotonic: ReadClock) -> None:
        self._verifier = verifier
        limit = verifier.settings.login_attempts_per_minute
        self._clients = FailureCounter(limit, monotonic)
        self._users = FailureCounter(limit, monotonic)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one login request."""
        if scope["method"] != "POST":
            await _send_json(send, 405, {"detail": "POST a username and password"})
            return
        try:
            username, password = _credentials(await _body(receive))
        except ValueError as error:
            await _send_json(send, 422, {"detail": str(error)})
            return
        client = str(scope["client"][0]) if scope.get("client") else ""
        if self._clients.blocked(client) or self._users.blocked(username):
            _LOG.warning("login refused (too many failures): user %.64r from %s", username, client)
            await _send_json(
                send, 429, {"detail": "too many failed logins; retry in a minute"},
                [(b"retry-after", str(int(WINDOW_SECONDS)).encode())],
            )  # fmt: skip
            return
        try:
            identity = self._verifier.login(username, password)
        except TokenError as error:
            self._clients.fail(client)
            self._users.fail(username)
            _LOG.warning("login failed: user %.64r from %s", username, client)
            await _send_json(send, 401, {"detail": str(error)}, [(b"www-authenticate", b"Bearer")])
            return
        await self._issue(send, identity.name, self._verifier.issue(identity))

    @staticmethod
    async def _issue(send: Send, name: str, issued: tuple[str, float]) -> None:
        token, ttl = issued
        _LOG.info("login: user %.64r", name)
        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={int(ttl)}"
        answer = {"access_token": token, "token_type": "bearer", "expires_in": int(ttl)}
        await _send_json(send, 200, answer, [(b"set-cookie", cookie.encode("latin-1"))])
