"""Who may ask, and how often: allowed hosts, safe redirects, per-client rate limits.

`guard(app, state)` wraps the whole ASGI app (outside the REST fast path) with:

- an allowed-hosts check on every HTTP request and WebSocket: the `Host` header must name
  the bind host, a localhost name, or one of `allowed_hosts` (`"*"` allows any), else 400;
  this is what stops a DNS-rebinding page from reading the API;
- a per-client token bucket (`rate_limit_per_second`, `rate_limit_burst`) on the REST and
  API routes (`/api/...`, seed 004's `/metrics/...` and OTLP/HTTP's `/v1/`), never on the
  streams (they are capped by count): 429 with `Retry-After`.

`safe_redirects(app, state)` wraps the routes (inside the REST fast path, which never
redirects): an absolute `Location` whose host is not allowed is cut down to its path.

`TokenBucket` is the one rate-limit model; the WebSocket's per-connection message limit
uses it too. `origin_allowed` is the one Origin rule of the WebSocket (same origin or a
configured CORS origin).
"""

from __future__ import annotations

import functools
import math
import socket
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway._settings import GatewaySettings
from gateway._state import GatewayState
from mesh_common.addresses import split_host_port

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "localhost.localdomain")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
MAX_TRACKED_CLIENTS = 4096
"""Client addresses whose buckets are kept (about 100 bytes each); the idlest go first."""
RATE_LIMITED = ("/api/", "/metrics/", "/v1/")
"""Path prefixes under the REST rate limit: the API, seed 004's `/metrics/...` routes and
OTLP/HTTP (`POST /v1/metrics`)."""
PUSH_BODY_BYTES = 4 * 1024 * 1024
"""The largest pushed body (seed 003 ingest and batch, seed 004 events, OTLP/HTTP after gzip
inflation): the aggregator's gRPC receive limit, 4 MiB. Past it, 413 naming the limit."""
STREAM_SUFFIX = "/stream"
"""API paths ending like this are streams: capped by count, not rate-limited."""


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take()` spends one if there is one."""

    __slots__ = ("_monotonic", "burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, monotonic: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._monotonic = monotonic
        self.updated = monotonic()

    def take(self) -> bool:
        """Spend a token if one is there; False means the caller is over its rate."""
        now = self._monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else math.inf


def host_name(value: str) -> str:
    """The host of a `Host` header or URL netloc, lower-case, without port or brackets."""
    host, _ = split_host_port(value.strip().lower())
    return host.rstrip(".")


def allowed_hosts(settings: GatewaySettings) -> frozenset[str] | None:
    """Every host name the gateway answers for; None when any is allowed ("*")."""
    if "*" in settings.allowed_hosts:
        return None
    names = {*LOCAL_HOSTS, host_name(settings.host)}
    if settings.host in WILDCARD_HOSTS:
        names.update(_own_names())
    names.update(host_name(host) for host in settings.allowed_hosts)
    return frozenset(name for name in names if name)


@functools.cache
def _own_names() -> tuple[str, ...]:
    """The machine's own names, looked up once (getfqdn may ask DNS)."""
    try:
        return (socket.gethostname().lower(), socket.getfqdn().lower())
    except OSError:
        return ()


def origin_allowed(origin: str | None, host: str | None, cors_origins: Iterable[str]) -> bool:
    """True for no Origin (not a browser), the same origin as `host`, or a CORS origin."""
    if origin is None:
        return True
    if origin in cors_origins or "*" in cors_origins:
        return True
    parsed = urllib.parse.urlsplit(origin)
    return host is not None and parsed.netloc.lower() == host.strip().lower()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _answer(
    send: Send, status: int, text: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = orjson.dumps({"detail": text})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Allowed hosts and the REST rate limit, in front of everything (module docstring).

    What a request goes through is decided here, once: with `allowed_hosts = ["*"]` no Host
    is looked at, with `rate_limit_per_second = 0` no bucket (bench/bench_gateway.py).
    """

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        settings = state.settings
        self._hosts = allowed_hosts(settings)
        self._rate = settings.rate_limit_per_second
        self._burst = float(settings.rate_limit_burst)
        self._monotonic = state.clocks.monotonic
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._seen_hosts: dict[str, bool] = {}
        """Host headers already judged (a handful in practice), so most requests skip parsing."""
        self._check_hosts = self._hosts is not None
        self._check_rate = self._rate > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type == "http":
            if self._check_hosts and not self._host_ok(_header(scope, b"host")):
                await _answer(send, 400, self._host_refusal(scope))
                return
            if self._check_rate and self._limited(scope):
                await self._too_many(scope, send)
                return
        elif scope_type == "websocket" and not self._websocket_host_ok(scope):
            await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
            return
        await self.app(scope, receive, send)

    def _websocket_host_ok(self, scope: Scope) -> bool:
        return not self._check_hosts or self._host_ok(_header(scope, b"host"))

    def _host_ok(self, host: str | None) -> bool:
        if self._hosts is None:
            return True
        if host is None:
            return False
        known = self._seen_hosts.get(host)
        if known is None:
            known = host_name(host) in self._hosts
            if len(self._seen_hosts) < MAX_TRACKED_CLIENTS:  # bounded: a client picks Host
                self._seen_hosts[host] = known
        return known

    @staticmethod
    def _host_refusal(scope: Scope) -> str:
        host = _header(scope, b"host")
        shown = "no Host header" if host is None else f"Host {host[:80]!r}"
        return f"{shown} is not served here (allowed_hosts)"

    def _limited(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if not path.startswith(RATE_LIMITED) or path.endswith(STREAM_SUFFIX):
            return False
        return not self._bucket(scope).take()

    async def _too_many(self, scope: Scope, send: Send) -> None:
        wait = max(1, math.ceil(self._bucket(scope).retry_after()))
        await _answer(
            send,
            429,
            f"rate limit: {self._rate:g} requests/s per client (rate_limit_per_second); "
            "retry later",
            [(b"retry-after", str(wait).encode())],
        )

    def _bucket(self, scope: Scope) -> TokenBucket:
        client = scope.get("client")
        key = str(client[0]) if client else ""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, self._monotonic)
        else:
            self._buckets.move_to_end(key)
        return bucket


class SafeRedirects:
    """Redirects that never point at a foreign host: such a `Location` is cut to its path.

    Inside the REST fast path (which never redirects), so its answers skip the wrapping.
    """

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self._hosts = allowed_hosts(state.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = self._checked(send)
        await self.app(scope, receive, send)

    def _checked(self, send: Send) -> Send:
        # A plain function handing back send's own awaitable: no coroutine per message.
        def checked(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                message["headers"] = [
                    (key, self.local_location(value) if key.lower() == b"location" else value)
                    for key, value in message.get("headers", ())
                ]
            return send(message)

        return checked

    def local_location(self, value: bytes) -> bytes:
        """`value` (a Location) if its host is allowed or it has none, else its path and query."""
        url = urllib.parse.urlsplit(value.decode("latin-1"))
        if not url.netloc or self._hosts is None or host_name(url.netloc) in self._hosts:
            return value
        path = "/" + url.path.lstrip("/")  # never "//host": that is another host again
        relative = urllib.parse.urlunsplit(("", "", path, url.query, url.fragment))
        return relative.encode("latin-1")


def guard(app: ASGIApp, state: GatewayState) -> ASGIApp:
    """`app` behind the allowed-hosts check and the REST rate limit."""
    return Guard(app, state)


def safe_redirects(app: ASGIApp, state: GatewayState) -> ASGIApp:
    """`app` whose redirects never point at a foreign host."""
    return SafeRedirects(app, state)
