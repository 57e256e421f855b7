"""The gateway with `[auth]`: tokens, scopes, logins and what stays open (real servers, curl)."""

from __future__ import annotations

import dataclasses
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent import AgentServer, EventTracker
from aggregator import DEFAULT_REGISTRY, AggregatorServer, AggregatorSettings, Registry
from gateway import GatewaySettings
from gateway._sse import PATH as SSE_PATH
from gateway._ws import PATH as WS_PATH
from mesh_common.auth_settings import AuthSettings
from mesh_common.tls import TlsSettings
from metricsmesh_cli.certs import write_certificates
from tests.auth_fixtures import PASSWORD, READ_TOKEN, WRITE_TOKEN, auth_settings, signed
from tests.eventually import eventually
from tests.hardened_gateway import serve_hardened
from tests.seed_curl import run_curl
from tests.seeds import document
from tests.sse_client import events
from tests.ws_client import receive

RULE = {
    "name": "Busy",
    "figure": "events_per_second",
    "comparator": ">",
    "threshold": 1000,
    "for_seconds": 5,
    "severity": "warning",
}


@asynccontextmanager
async def secure_mesh(auth: AuthSettings) -> AsyncIterator[str]:
    """An agent, an aggregator and a gateway, both with `auth`; yields the gateway's URL."""
    entry = DEFAULT_REGISTRY[0]
    agent = AgentServer(EventTracker(entry.name), grace_seconds=0)
    await agent.start()
    try:
        registry = Registry([dataclasses.replace(entry, host="127.0.0.1", agent_port=agent.port)])
        settings = AggregatorSettings(port=0, interval_seconds=0.2, deadline_seconds=0.15)
        async with AggregatorServer(registry, settings, auth=auth) as aggregator:
            gateway = GatewaySettings(port=0, aggregator=aggregator.address, services_configured=1)
            async with serve_hardened(gateway, auth=auth) as port:
                yield f"http://127.0.0.1:{port}"
    finally:
        await agent.stop(0)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        secure_mesh(auth_settings()) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_health_and_the_consolidated_endpoint_need_no_token(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health/live")).status_code == 200

    async def consolidated() -> bool:
        return (await http.get("/api/v1/real-time-metrics")).status_code == 200

    # 200 only once the gateway's own calls to the aggregator carry its client_token.
    await eventually(consolidated, what="a snapshot through the authenticated aggregator")
    assert (await http.get("/health/ready")).status_code == 200


async def test_a_missing_token_is_401_with_a_bearer_challenge(http: httpx.AsyncClient) -> None:
    for path in ("/api/v1/alerts/active", "/api/v1/services", "/metrics", "/"):
        answer = await http.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"
    answer = await http.post("/api/v1/alerts/rules", json=RULE)
    assert answer.status_code == 401


async def test_expired_and_forged_tokens_are_401(http: httpx.AsyncClient) -> None:
    expired = signed({"sub": "ci", "scope": "read", "exp": int(time.time()) - 1})
    answer = await http.get("/api/v1/alerts/active", headers=bearer(expired))
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]
    forged = signed({"sub": "ci", "scope": "admin", "exp": 2**40}, secret="f" * 40)
    answer = await http.get("/api/v1/alerts/active", headers=bearer(forged))
    assert answer.status_code == 401 and "signature" in answer.json()["detail"]


async def test_a_read_token_reads_but_a_write_is_403_naming_the_scope(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.get("/api/v1/alerts/active", headers=bearer(READ_TOKEN))).status_code == 200
    refused = await http.post("/api/v1/alerts/rules", json=RULE, headers=bearer(READ_TOKEN))
    assert refused.status_code == 403
    assert "'write' scope" in refused.json()["detail"]
    assert 'scope="write"' in refused.headers["www-authenticate"]
    created = await http.post("/api/v1/alerts/rules", json=RULE, headers=bearer(WRITE_TOKEN))
    assert created.status_code == 201, created.text  # and the aggregator took the client_token


async def test_login_issues_a_working_token_and_a_strict_cookie(http: httpx.AsyncClient) -> None:
    answer = await http.post("/auth/login", json={"username": "user", "password": PASSWORD})
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    token = body["access_token"]
    assert (await http.get("/api/v1/alerts/active", headers=bearer(token))).status_code == 200
    cookie = answer.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    # The cookie reads (a browser's EventSource), but never writes.
    cookies = {"mesh_token": token}
    async with httpx.AsyncClient(base_url=str(http.base_url), cookies=cookies) as browser:
        assert (await browser.get("/api/v1/alerts/active")).status_code == 200
        assert (await browser.post("/api/v1/alerts/rules", json=RULE)).status_code == 401


async def test_failed_logins_are_401_then_rate_limited_and_never_logged_with_the_password(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    wrong = "not-the-password-x7"
    for _ in range(5):
        answer = await http.post("/auth/login", json={"username": "user", "password": wrong})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    # Past 5 failures a minute, even the right password waits.
    answer = await http.post("/auth/login", json={"username": "user", "password": PASSWORD})
    assert answer.status_code == 429 and "retry-after" in answer.headers
    assert "login failed: user 'user'" in caplog.text
    for secret in (wrong, PASSWORD, READ_TOKEN, WRITE_TOKEN):
        assert secret not in caplog.text


async def test_the_consolidated_endpoint_can_be_closed_too() -> None:
    auth = auth_settings(public_consolidated=False)
    async with secure_mesh(auth) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.get("/api/v1/real-time-metrics")).status_code == 401

        async def with_token() -> bool:
            answer = await http.get("/api/v1/real-time-metrics", headers=bearer(READ_TOKEN))
            return answer.status_code == 200

        await eventually(with_token, what="the consolidated endpoint with a token")


async def test_seed_003_login_curl_line_works_as_written(http: httpx.AsyncClient) -> None:
    text = document("003")
    start = text.index("\n## Authentication\n")
    block = re.search(r"```bash\n(.*?)```", text[start:], flags=re.DOTALL)
    assert block is not None
    login = block.group(1).split("# Use token")[0]
    command = " ".join(
        line.rstrip("\\").strip() for line in login.splitlines() if line and "#" not in line
    )
    status, body = await run_curl(command, str(http.base_url).rstrip("/"))
    assert status == 200, body
    token = httpx.Response(200, content=body).json()["access_token"]
    answer = await http.get("/api/v1/alerts/active", headers=bearer(token))
    assert answer.status_code == 200


async def login_cookie(http: httpx.AsyncClient) -> str:
    answer = await http.post("/auth/login", json={"username": "user", "password": PASSWORD})
    assert answer.status_code == 200
    return str(answer.json()["access_token"])


async def test_sse_needs_a_token_and_takes_the_login_cookie(http: httpx.AsyncClient) -> None:
    assert (await http.get(SSE_PATH)).status_code == 401
    token = await login_cookie(http)
    headers = {"Cookie": f"mesh_token={token}"}
    async with http.stream("GET", SSE_PATH, headers=headers) as response:
        assert response.status_code == 200
        first = await anext(events(response))
        assert first.name


async def test_websocket_needs_a_token_and_takes_the_login_cookie(http: httpx.AsyncClient) -> None:
    url = str(http.base_url).replace("http://", "ws://").rstrip("/") + WS_PATH
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass
    assert refused.value.response.status_code == 403  # closed before the upgrade
    forged = signed({"sub": "x", "scope": "read", "exp": 2**40}, secret="z" * 40)
    with pytest.raises(InvalidStatus):
        async with connect(url, additional_headers={"Cookie": f"mesh_token={forged}"}):
            pass
    token = await login_cookie(http)
    async with connect(url, additional_headers={"Cookie": f"mesh_token={token}"}) as client:
        assert (await receive(client))["type"]


async def test_seed_003_ingest_needs_write_and_its_query_needs_read(
    http: httpx.AsyncClient,
) -> None:
    metric = {"name": "cpu_usage_percent", "type": "gauge", "value": 45.2}
    answer = await http.post("/api/v1/metrics/ingest", json=metric, headers=bearer(READ_TOKEN))
    assert answer.status_code == 403
    answer = await http.post("/api/v1/metrics/ingest", json=metric, headers=bearer(WRITE_TOKEN))
    assert answer.status_code == 201, answer.text  # through the aggregator's write check
    query = {"metric_name": "cpu_usage_percent"}
    answer = await http.post("/api/v1/metrics/query", json=query, headers=bearer(READ_TOKEN))
    assert answer.status_code not in (401, 403), answer.text
    assert (await http.post("/api/v1/metrics/query", json=query)).status_code == 401


async def test_a_cors_preflight_allows_the_authorization_header() -> None:
    origin = "https://dash.example"
    settings = GatewaySettings(
        port=0, aggregator="127.0.0.1:9", services_configured=1, cors_origins=(origin,)
    )
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    async with (
        serve_hardened(settings, auth=auth_settings()) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        answer = await http.options("/api/v1/services", headers=headers)
    assert answer.status_code == 200, answer.text
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()


async def test_the_login_is_in_the_openapi_document_and_a_bad_body_is_422(
    http: httpx.AsyncClient,
) -> None:
    schema = (await http.get("/openapi.json", headers=bearer(READ_TOKEN))).json()
    assert "post" in schema["paths"]["/auth/login"]
    assert (await http.post("/auth/login", json={"username": "user"})).status_code == 422


async def test_tokens_and_mutual_tls_together_on_every_hop(tmp_path: Path) -> None:
    files = write_certificates(tmp_path, ["127.0.0.1", "localhost"])
    tls = TlsSettings(
        ca_file=str(files.ca),
        cert_file=str(files.server),
        key_file=str(files.server_key),
        client_auth=True,
    )
    auth = auth_settings(public_consolidated=False)
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(str(files.client), str(files.client_key))
    settings = AggregatorSettings(port=0, interval_seconds=0.2, deadline_seconds=0.15)
    async with (
        AggregatorServer(Registry([]), settings, tls=tls, auth=auth) as aggregator,
        serve_hardened(
            GatewaySettings(port=0, aggregator=aggregator.address), tls=tls, auth=auth
        ) as port,
        httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=context) as https,
    ):
        assert (await https.get("/api/v1/real-time-metrics")).status_code == 401

        async def answered() -> bool:
            answer = await https.get("/api/v1/real-time-metrics", headers=bearer(READ_TOKEN))
            return answer.status_code == 200  # the gateway's TLS channel carries its token

        await eventually(answered, what="a snapshot over HTTPS, TLS and tokens")
