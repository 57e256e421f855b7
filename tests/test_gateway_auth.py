"""The gateway with `[auth]`: tokens, scopes, logins, stream tickets and what stays open.

Real servers and clients (httpx, websockets, curl); the tickets' expiry with a fake clock.
"""

from __future__ import annotations

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

from aggregator import AggregatorServer, AggregatorSettings, Registry
from gateway import GatewaySettings, create_app
from gateway._errors import TicketLimitError
from gateway._sse import PATH as SSE_PATH
from gateway._tickets import MAX_TICKETS_PER_IDENTITY, TicketBook
from gateway._ws import PATH as WS_PATH
from mesh_common.auth import Identity
from mesh_common.clocks import Clocks
from mesh_common.errors import TokenError
from mesh_common.tls import TlsSettings
from metricsmesh_cli.certs import write_certificates
from tests.auth_fixtures import PASSWORD, READ_TOKEN, WRITE_TOKEN, auth_settings, signed
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.hardened_gateway import serve_hardened
from tests.secure_mesh import secure_mesh
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


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        secure_mesh(auth_settings()) as mesh,
        httpx.AsyncClient(base_url=mesh.url, timeout=10) as client,
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
    for path in ("/api/v1/alerts/active", "/api/v1/services", "/metrics", "/auth/identity"):
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
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain HTTP here; over HTTPS it is Secure
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
    async with (
        secure_mesh(auth) as mesh,
        httpx.AsyncClient(base_url=mesh.url, timeout=10) as http,
    ):
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
        login = await https.post("/auth/login", json={"username": "user", "password": PASSWORD})
        assert "; secure" in login.headers["set-cookie"].lower()


async def test_the_dashboard_page_and_its_files_need_no_token(http: httpx.AsyncClient) -> None:
    # They hold no data, and the page must load to show its sign-in form.
    page = await http.get("/")
    assert page.status_code == 200 and 'id="signin"' in page.text
    for asset in ("dashboard.js", "auth.js", "signin.js", "dashboard.css"):
        assert (await http.get(f"/static/{asset}")).status_code == 200, asset
    assert (await http.get("/static/../api/v1/schema")).status_code == 401


async def test_the_identity_says_who_the_credentials_speak_for(http: httpx.AsyncClient) -> None:
    answer = await http.get("/auth/identity", headers=bearer(READ_TOKEN))
    assert answer.json() == {"authentication": True, "name": "reader", "scopes": ["read"]}
    token = await login_cookie(http)
    answer = await http.get("/auth/identity", headers={"Cookie": f"mesh_token={token}"})
    assert answer.json() == {
        "authentication": True,
        "name": "user",
        "scopes": ["read", "write"],
    }


async def test_without_auth_the_identity_says_so() -> None:
    settings = GatewaySettings(port=0, aggregator="127.0.0.1:9", services_configured=1)
    async with (
        serve_hardened(settings) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        answer = await http.get("/auth/identity")
        assert answer.json() == {"authentication": False, "name": "", "scopes": []}
        assert (await http.post("/auth/ticket")).status_code == 404


async def test_logout_clears_the_cookie_but_only_from_the_gateways_own_pages(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post("/auth/logout", headers={"Origin": str(http.base_url).rstrip("/")})
    assert answer.status_code == 204
    cleared = answer.headers["set-cookie"].lower()
    assert cleared.startswith("mesh_token=") and "max-age=0" in cleared
    assert "httponly" in cleared and "samesite=strict" in cleared
    forged = await http.post("/auth/logout", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers


# --- stream tickets -------------------------------------------------------------------------


async def ticket(http: httpx.AsyncClient, token: str = READ_TOKEN) -> str:
    answer = await http.post("/auth/ticket", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["expires_in"] == 30 and answer.headers["cache-control"] == "no-store"
    return str(body["ticket"])


async def test_a_ticket_opens_one_sse_stream_once(http: httpx.AsyncClient) -> None:
    issued = await ticket(http)
    async with http.stream("GET", f"{SSE_PATH}?ticket={issued}") as response:
        assert response.status_code == 200
        assert (await anext(events(response))).name
    again = await http.get(f"{SSE_PATH}?ticket={issued}")
    assert again.status_code == 401 and "already used" in again.json()["detail"]
    assert again.headers["www-authenticate"] == "Bearer"


async def test_a_ticket_opens_one_websocket_once(http: httpx.AsyncClient) -> None:
    url = str(http.base_url).replace("http://", "ws://").rstrip("/") + WS_PATH
    issued = await ticket(http)
    async with connect(f"{url}?ticket={issued}") as client:
        assert (await receive(client))["type"] == "welcome"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{url}?ticket={issued}"):
            pass
    assert refused.value.response.status_code == 403  # closed (1008) before the upgrade


async def test_tickets_need_the_header_and_the_read_scope(http: httpx.AsyncClient) -> None:
    assert (await http.post("/auth/ticket")).status_code == 401
    token = await login_cookie(http)
    cookie_only = await http.post("/auth/ticket", headers={"Cookie": f"mesh_token={token}"})
    assert cookie_only.status_code == 401  # a forged cross-site POST would carry no more
    no_scope = signed({"sub": "nobody", "scope": "", "exp": 2**40})
    refused = await http.post("/auth/ticket", headers=bearer(no_scope))
    assert refused.status_code == 403 and "'read' scope" in refused.json()["detail"]
    assert (await http.get(f"{SSE_PATH}?ticket=made-up")).status_code == 401


async def test_a_ticket_is_no_good_on_writes_nor_on_other_routes(http: httpx.AsyncClient) -> None:
    issued = await ticket(http, WRITE_TOKEN)
    assert (await http.get(f"/api/v1/alerts/active?ticket={issued}")).status_code == 401
    assert (await http.get(f"/metrics?ticket={issued}")).status_code == 401
    write = await http.post(f"/api/v1/alerts/rules?ticket={issued}", json=RULE)
    assert write.status_code == 401
    assert (await http.post(f"{SSE_PATH}?ticket={issued}")).status_code == 401
    # None of those spent it: it still opens its stream.
    async with http.stream("GET", f"{SSE_PATH}?ticket={issued}") as response:
        assert response.status_code == 200
    fresh = await ticket(http)
    twice = await http.get(f"{SSE_PATH}?ticket={fresh}&ticket={fresh}")
    assert twice.status_code == 401 and "one stream ticket" in twice.json()["detail"]


async def test_the_ticket_route_and_its_errors_are_in_the_openapi_document(
    http: httpx.AsyncClient,
) -> None:
    schema = (await http.get("/openapi.json", headers=bearer(READ_TOKEN))).json()
    operation = schema["paths"]["/auth/ticket"]["post"]
    assert {"200", "401", "429", "503"} <= set(operation["responses"])
    assert "single-use" in operation["summary"] and "?ticket=" in operation["description"]
    assert "get" in schema["paths"]["/auth/identity"]
    assert "post" in schema["paths"]["/auth/logout"]


@asynccontextmanager
async def app_client(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with `[auth]` and a fake monotonic clock, called in process (no aggregator)."""
    settings = GatewaySettings(aggregator="127.0.0.1:9")
    clocks = Clocks(monotonic=clock, wall=time.time)
    app = create_app(settings, auth=auth_settings(), clocks=clocks)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        yield http


async def let_through(http: httpx.AsyncClient, issued: str) -> bool:
    """Whether the auth check lets the SSE path through with `issued`, spending it.

    The route answers `replay=-1` with 422 before it opens a stream; a refused ticket is 401.
    """
    answer = await http.get(SSE_PATH, params={"ticket": issued, "replay": "-1"})
    assert answer.status_code in (401, 422), answer.text
    return answer.status_code == 422


async def test_a_ticket_runs_out_after_thirty_seconds(clock: FakeClock) -> None:
    async with app_client(clock) as http:
        first, second = await ticket(http), await ticket(http)
        clock.tick(29.9)
        assert await let_through(http, first)
        assert not await let_through(http, first)  # spent
        clock.tick(0.1)
        assert not await let_through(http, second)  # expired, never used


async def test_one_identity_holds_at_most_32_unspent_tickets(clock: FakeClock) -> None:
    async with app_client(clock) as http:
        held = [await ticket(http) for _ in range(MAX_TICKETS_PER_IDENTITY)]
        clock.tick(10)
        refused = await http.post("/auth/ticket", headers=bearer(READ_TOKEN))
        assert refused.status_code == 429 and "32 unspent" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "20"  # when the oldest runs out
        await ticket(http, WRITE_TOKEN)  # another identity is not held back
        assert await let_through(http, held[0])  # spending one frees its place
        await ticket(http)
        clock.tick(30)  # all of them expired
        await ticket(http)


def test_the_gateway_holds_at_most_its_capacity_of_tickets(clock: FakeClock) -> None:
    book = TicketBook(clock, capacity=3, per_identity=2)
    alice, bob = Identity("alice", frozenset({"read"})), Identity("bob", frozenset({"read"}))
    issued = [book.issue(alice), book.issue(alice), book.issue(bob)]
    clock.tick(5)
    with pytest.raises(TicketLimitError) as full:
        book.issue(bob)
    assert full.value.status == 503 and full.value.retry_after == 25
    assert book.redeem(issued[2]) == bob
    with pytest.raises(TokenError):
        book.redeem(issued[2])
    book.issue(bob)
    clock.tick(25)
    assert [book.issue(alice), book.issue(bob)]  # the expired ones made room
