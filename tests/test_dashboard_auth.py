"""The dashboard with `[auth]` on, over HTTPS, in real headless Chromium that trusts the mesh's CA.

The gateway serves HTTPS with a certificate from `metrics-mesh certs`, and Chromium trusts
that CA through the NSS database of its HOME (`tests.browser.trusting_home`): no certificate
check is turned off. Every hop has `[auth]`, with story 23.2's endpoint closed too, so the
page reads nothing without credentials. The screenshots of the sign-in form and of the
signed-in dashboard go to test-artifacts/.
"""

from __future__ import annotations

import functools
import http.server
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway._sse import PATH as SSE_PATH
from gateway._ws import PATH as WS_PATH
from mesh_common.tls import TlsSettings
from metricsmesh_cli.certs import Certificates, write_certificates
from tests.auth_fixtures import PASSWORD, READ_TOKEN, WRITE_TOKEN, auth_settings
from tests.browser import artifact, open_page, playwright_api, trusting_home
from tests.secure_mesh import SecureMesh, secure_mesh

Page = playwright_api.Page
expect = playwright_api.expect
WAIT = 15_000
"""Milliseconds a page may take to show what a test waits for (a loaded, shared machine)."""
SERVICES = 3
FORGED_RULE = {
    "name": "Forged",
    "figure": "events_per_second",
    "comparator": ">",
    "threshold": 1,
    "severity": "critical",
}


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return write_certificates(tmp_path / "certs", ["127.0.0.1", "localhost"])


@pytest.fixture
def home(tmp_path: Path, certs: Certificates) -> Path:
    """A HOME whose certificate database trusts the mesh's CA."""
    return trusting_home(tmp_path / "home", certs.ca)


@pytest.fixture
async def secure(certs: Certificates) -> AsyncIterator[SecureMesh]:
    """Three agents, an aggregator and the HTTPS gateway, all with `[auth]` and TLS."""
    tls = TlsSettings(
        ca_file=str(certs.ca),
        cert_file=str(certs.server),
        key_file=str(certs.server_key),
        client_auth=False,  # the browser has no client certificate
    )
    auth = auth_settings(public_consolidated=False)
    async with secure_mesh(auth, tls=tls, services=SERVICES) as running:
        yield running


def cell(service: str, field: str) -> str:
    return f'#rows tr[data-service="{service}"] td[data-field="{field}"]'


async def shows_live_rows(page: Page) -> None:
    """The table has every service's row and the stream is live."""
    await expect(page.locator("#rows tr[data-service]")).to_have_count(SERVICES, timeout=WAIT)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT)


async def log_in(page: Page, password: str) -> None:
    """Type a username and `password` into the form and press Enter; wait for the answer."""
    await page.locator("#login-user").fill("user")
    await page.locator("#login-password").fill(password)
    async with page.expect_response(lambda response: response.url.endswith("/auth/login")):
        await page.locator("#login-password").press("Enter")


async def test_a_login_opens_the_dashboard_and_its_streams_ride_on_the_cookie(
    secure: SecureMesh, home: Path
) -> None:
    async with open_page(secure.url + "/", home=home, width=1280, height=820) as page:
        form = page.locator("#signin")
        await expect(form).to_be_visible(timeout=WAIT)
        await expect(page.locator("main")).to_be_hidden()
        await expect(page.locator("#login-user")).to_be_focused()
        await log_in(page, "not-the-password")
        await expect(page.locator("#signin-error")).to_have_text(
            "Unknown username or wrong password."
        )
        await expect(page.locator("#login-password")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#login-password")).to_be_focused()
        await page.screenshot(path=artifact("dashboard-signin.png"))
        await log_in(page, PASSWORD)
        await expect(form).to_be_hidden()
        await shows_live_rows(page)
        await expect(page.locator("#session-name")).to_have_text("user")
        secure.tracker("websocket-ingestion").record(n=42)
        total = page.locator(cell("websocket-ingestion", "total_events"))
        await expect(total).to_have_text("42", timeout=WAIT)
        await page.screenshot(path=artifact("dashboard-signed-in.png"), full_page=True)
        await page.reload()  # the cookie keeps the session
        await shows_live_rows(page)
        await expect(form).to_be_hidden()
        secure.tracker("websocket-ingestion").record(n=8)
        await expect(total).to_have_text("50", timeout=WAIT)
        streams = [url for url in page.requested if SSE_PATH in url]
        assert streams and not [url for url in page.requested if "ticket" in url], streams
        await page.locator("#sign-out").click()
        await expect(form).to_be_visible(timeout=WAIT)
        await expect(page.locator("#session")).to_be_hidden()
        # Past 5 failures a minute the gateway says to wait, and the form shows it.
        for _ in range(5):
            await log_in(page, "not-the-password")
        await log_in(page, PASSWORD)
        await expect(page.locator("#signin-error")).to_have_text(
            "Too many failed logins; retry in a minute."
        )


WEBSOCKET_WELCOME = """async (path) => {
  const { streamUrl } = await import("/static/auth.js");
  const url = new URL(await streamUrl(path), location.href);
  url.protocol = "wss:";
  const socket = new WebSocket(url);
  const first = await new Promise((resolve, reject) => {
    socket.onmessage = (event) => resolve(JSON.parse(event.data));
    socket.onerror = () => reject(new Error("the WebSocket failed"));
  });
  socket.close();
  return first.type;
}"""
"""Opens the WebSocket from the page as the dashboard opens its streams: its first message."""


async def test_a_pasted_token_works_and_the_streams_go_through_single_use_tickets(
    secure: SecureMesh, home: Path
) -> None:
    async with open_page(
        secure.url + "/", home=home, width=1280, height=820, color_scheme="dark"
    ) as page:
        token = page.locator("#token-input")
        await expect(token).to_be_visible(timeout=WAIT)
        await token.fill("not-a-token")
        await token.press("Enter")
        await expect(page.locator("#signin-error")).to_have_text(
            "The bearer token is not one of [auth] api_tokens."
        )
        await expect(token).to_be_focused()
        await page.screenshot(path=artifact("dashboard-signin-token-dark.png"))
        await token.fill(READ_TOKEN)
        await token.press("Enter")
        await shows_live_rows(page)
        await expect(page.locator("#session-name")).to_have_text("reader")
        secure.tracker("enrichment-pipeline").record(n=7)
        total = page.locator(cell("enrichment-pipeline", "total_events"))
        await expect(total).to_have_text("7", timeout=WAIT)
        await page.reload()  # the token is kept for the tab's session
        await shows_live_rows(page)
        await expect(page.locator("#signin")).to_be_hidden()
        assert await page.evaluate(WEBSOCKET_WELCOME, WS_PATH) == "welcome"
        streams = [url for url in page.requested if SSE_PATH in url or WS_PATH in url]
        tickets = [url for url in page.requested if url.endswith("/auth/ticket")]
        # Two streams a load (live and the past), two loads, and the WebSocket.
        assert len(streams) >= 5 and len(tickets) >= len(streams), page.requested
        assert all("ticket=" in url for url in streams), streams
        assert not [url for url in page.requested if READ_TOKEN in url]
        # Each ticket was good once: its URL again is refused.
        again = await page.evaluate("(url) => fetch(url).then((r) => r.status)", streams[0])
        assert again == 401


FORGERY_PAGE = """<!doctype html><title>another site</title>
<form method="POST" enctype="text/plain" action="{action}">
  <input name='{{"name": "Forged", "figure": "events_per_second", "x": "' value='"}}'>
</form>"""
"""A page of another origin that posts a rule to the gateway, as a CSRF attack would."""

FORGED_READ = """(url) => fetch(url, {mode: "no-cors", credentials: "include"})
  .then(() => "opaque", () => "blocked")"""

FORGED_FETCH = """([url, rule]) => fetch(url, {
  method: "POST", mode: "no-cors", credentials: "include",
  headers: {"Content-Type": "text/plain"}, body: JSON.stringify(rule),
}).then(() => "opaque", () => "blocked")"""
"""A cross-origin POST a page may send without asking (no preflight). The page cannot read the
answer (Chromium's opaque-response blocking may even fail the fetch): the gateway's answer is
read from the browser's network events instead."""


async def rule_names(secure: SecureMesh, certs: Certificates) -> list[str]:
    context = ssl.create_default_context(cafile=str(certs.ca))
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    async with httpx.AsyncClient(base_url=secure.url, verify=context, headers=headers) as http:
        body = (await http.get("/api/v1/alerts/rules")).json()
    return [rule["name"] for rule in body["rules"]]


async def forged_response(attacker: Page, url: str, act: Callable[[Page, str], Any]) -> Any:
    """The gateway's answer to the request to `url` that `act` makes from the attacker's page."""
    async with attacker.expect_response(lambda response: response.url == url) as answer:
        await act(attacker, url)
    return await answer.value


async def read(attacker: Page, url: str) -> None:
    await attacker.evaluate(FORGED_READ, url)


async def fetch_write(attacker: Page, url: str) -> None:
    await attacker.evaluate(FORGED_FETCH, [url, FORGED_RULE])


async def submit_write(attacker: Page, url: str) -> None:
    await attacker.locator("form").evaluate("(form) => form.submit()")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the forgery page without logging each request."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


@pytest.fixture
def other_origin(tmp_path: Path, certs: Certificates, secure: SecureMesh) -> Iterator[str]:
    """The forgery page's URL on another origin: HTTPS on another port of 127.0.0.1.

    Served for real (on loopback, as the gateway: Chromium keeps pages of the public
    internet from reaching loopback at all, which would prove nothing here).
    """
    site = tmp_path / "site"
    site.mkdir()
    action = secure.url + "/api/v1/alerts/rules"
    (site / "index.html").write_text(FORGERY_PAGE.format(action=action))
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server, certs.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_write_from_another_origin_is_refused_though_the_cookie_rides_along(
    secure: SecureMesh, home: Path, certs: Certificates, other_origin: str
) -> None:
    async with open_page(secure.url + "/", home=home) as page:
        await log_in(page, PASSWORD)
        await shows_live_rows(page)
        # Another origin of the same site (a port does not make a site): the SameSite=Strict
        # cookie goes along, and still authorizes no write.
        attacker = await page.context.new_page()
        await attacker.goto(other_origin)
        # Its read carries the cookie: the gateway knows the user (the page cannot read it).
        identity = await forged_response(attacker, secure.url + "/auth/identity", read)
        assert identity.status == 200

        rules = secure.url + "/api/v1/alerts/rules"
        for write in (fetch_write, submit_write):
            assert (await forged_response(attacker, rules, write)).status == 401, write
        assert "Forged" not in await rule_names(secure, certs)
        # The same write with the header is taken: the check above could see a rule.
        context = ssl.create_default_context(cafile=str(certs.ca))
        async with httpx.AsyncClient(verify=context) as http:
            created = await http.post(
                secure.url + "/api/v1/alerts/rules",
                json={**FORGED_RULE, "name": "Allowed"},
                headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
            )
        assert created.status_code == 201, created.text
        assert "Allowed" in await rule_names(secure, certs)
