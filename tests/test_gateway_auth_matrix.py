"""Every kind of bad token on every HTTP surface: REST reads and writes, SSE and WebSocket.

Each refusal is the right status with a Bearer challenge, and nothing of the token is in the
answer or the logs. The gRPC half of the matrix is in tests/test_auth.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway._sse import PATH as SSE_PATH
from gateway._ws import PATH as WS_PATH
from tests.auth_fixtures import READ_TOKEN, WRITE_TOKEN, auth_settings, signed
from tests.secure_mesh import secure_mesh
from tests.sse_client import events
from tests.ws_client import receive

FAR = 2**40
BAD_TOKENS = {
    "missing": None,
    "expired": signed({"sub": "old", "scope": "read write", "exp": 1_000_000}),
    "wrong signature": signed({"sub": "x", "scope": "read write", "exp": FAR}, secret="z" * 40),
    "unknown static": "not-a-configured-token",
    "malformed header": "two words",
}
"""Tokens that must be refused as unauthenticated (401), whatever the call."""
NO_SCOPE = signed({"sub": "nobody", "scope": "", "exp": FAR})
"""A valid token without even `read`: 403 everywhere but the open paths."""
RULE = {
    "name": "Busy",
    "figure": "events_per_second",
    "comparator": ">",
    "threshold": 1000,
    "for_seconds": 5,
    "severity": "warning",
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        secure_mesh(auth_settings()) as mesh,
        httpx.AsyncClient(base_url=mesh.url, timeout=10) as client,
    ):
        yield client


def headers_of(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def assert_secret_free(text: str) -> None:
    for token in (*BAD_TOKENS.values(), NO_SCOPE, READ_TOKEN, WRITE_TOKEN):
        if token is not None and len(token) > 9:
            assert token not in text


async def test_rest_reads_and_writes_refuse_every_bad_token(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    calls = [("GET", "/api/v1/services", None), ("POST", "/api/v1/alerts/rules", RULE)]
    for method, path, body in calls:
        for case, token in BAD_TOKENS.items():
            answer = await http.request(method, path, json=body, headers=headers_of(token))
            assert answer.status_code == 401, (method, path, case, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer"), case
            assert_secret_free(answer.text)
        answer = await http.request(method, path, json=body, headers=headers_of(NO_SCOPE))
        assert answer.status_code == 403, (method, path, answer.text)
        assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
    write = await http.post("/api/v1/alerts/rules", json=RULE, headers=headers_of(READ_TOKEN))
    assert write.status_code == 403 and 'scope="write"' in write.headers["www-authenticate"]
    assert_secret_free(caplog.text)


async def test_sse_refuses_every_bad_token_and_streams_with_a_good_one(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for case, token in BAD_TOKENS.items():
        async with http.stream("GET", SSE_PATH, headers=headers_of(token)) as response:
            assert response.status_code == 401, case
    for token in BAD_TOKENS.values():  # the cookie path refuses them alike
        if token is not None and " " not in token:
            cookie = {"Cookie": f"mesh_token={token}"}
            async with http.stream("GET", SSE_PATH, headers=cookie) as response:
                assert response.status_code == 401
    async with http.stream("GET", SSE_PATH, headers=headers_of(NO_SCOPE)) as response:
        assert response.status_code == 403
    async with http.stream("GET", SSE_PATH, headers=headers_of(READ_TOKEN)) as response:
        assert response.status_code == 200
        assert (await anext(events(response))).name
    assert_secret_free(caplog.text)


async def test_websocket_refuses_every_bad_token_before_the_upgrade(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = str(http.base_url).replace("http://", "ws://").rstrip("/") + WS_PATH
    for case, token in [*BAD_TOKENS.items(), ("no scope", NO_SCOPE)]:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers_of(token)):
                pass
        assert refused.value.response.status_code == 403, case  # no upgrade, no socket
    async with connect(url, additional_headers=headers_of(READ_TOKEN)) as client:
        assert (await receive(client))["type"]
    assert_secret_free(caplog.text)
