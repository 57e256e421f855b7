"""The cost of `[auth]` per request: the token check alone, and the gateway's middleware.

python -m bench auth

Measured in-process, best of 5 rounds of N calls each:
- `Verifier.identify` of a static API token (SHA-256 + constant-time compare) and of an HS256
  JWT: its first use (pyjwt's signature check) and a repeat (the verified JWTs by SHA-256);
- one HTTP request through `gateway._auth.Authenticate` in front of a trivial ASGI app,
  against the same request to the bare app in the same run (the baseline): the difference
  is what a request pays for authentication. Target: <= 20 us per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import jwt
from starlette.types import Message, Receive, Scope, Send

from gateway._auth import Authenticate
from gateway._tickets import TicketBook
from mesh_common.auth import Verifier, token_digest
from mesh_common.auth_settings import SECTION

N = 20_000
ROUNDS = 5
SECRET = "bench-secret-of-at-least-thirty-two-characters"
STATIC = "bench-static-token"


def verifier() -> Verifier:
    table = {
        "jwt_secret": SECRET,
        "api_tokens": [
            {"name": f"t{i}", "sha256": token_digest(f"other-{i}"), "scopes": ["read"]}
            for i in range(4)
        ]
        + [{"name": "bench", "sha256": token_digest(STATIC), "scopes": ["read"]}],
    }
    return Verifier(SECTION.parse(table, {}))


def best_us(call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(N):
            call()
        best = min(best, (time.perf_counter() - started) / N)
    return best * 1e6


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def scope_with(token: str) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/services",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 5000),
    }


async def best_request_us(
    app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str
) -> float:
    scope = scope_with(token)
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(N):
            await app(scope, receive, send)
        best = min(best, (time.perf_counter() - started) / N)
    assert set(statuses) == {200}, set(statuses)
    return best * 1e6


def main() -> None:
    check = verifier()
    token = jwt.encode({"sub": "bench", "scope": "read", "exp": 2**40}, SECRET, algorithm="HS256")
    static_us = best_us(lambda: check.identify(STATIC))
    jwt_us = best_us(lambda: check.identify(token))
    print(f"identify, static token (5 configured): {static_us:6.2f} us")
    cold_us = best_us(lambda: check._decode(token))  # what a JWT's first use costs
    print(f"identify, HS256 JWT, repeat:           {jwt_us:6.2f} us")
    print(f"identify, HS256 JWT, first use:        {cold_us:6.2f} us (signature check)")
    guarded = Authenticate(bare, check, TicketBook(time.monotonic))
    baseline = asyncio.run(best_request_us(bare, STATIC))
    for name, value in (("static token", STATIC), ("HS256 JWT", token)):
        with_auth = asyncio.run(best_request_us(guarded, value))
        print(
            f"request through the middleware, {name}: {with_auth:6.2f} us vs {baseline:5.2f} us "
            f"bare (baseline, same run): +{with_auth - baseline:5.2f} us, "
            f"{with_auth / baseline:4.1f}x (target: +<= 20 us)"
        )


if __name__ == "__main__":
    main()
