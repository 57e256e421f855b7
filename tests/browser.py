"""Real headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright.

Importing this module skips the importing test module when Playwright or the browser is
missing. `open_page(url)` is the one browser setup of the dashboard and /docs tests: a fresh
browser, a page of the given size and colour scheme at `url`, and an assertion at the end
that the page raised no JavaScript error. `offline=True` aborts every request to another
origin, as a machine without internet would (the aborted URLs are listed on the page object).
Every URL the browser asked for, WebSockets included, is listed too (`page.requested`).

`trusting_home(directory, ca)` makes a HOME whose NSS database trusts the CA `ca` (as
`certutil` of Debian's `libnss3-tools` writes it): `open_page(url, home=...)` then opens an
HTTPS page signed by that CA as a user who trusts it would, with no certificate check
turned off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
"""Where browser tests save their screenshots (looked at by a person)."""
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.async_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian package `chromium`)", allow_module_level=True)

Page = playwright_api.Page


def artifact(name: str) -> str:
    """The path of a screenshot called `name` in test-artifacts/ (created if needed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


@asynccontextmanager
async def open_page(
    url: str,
    *,
    width: int = 1440,
    height: int = 1000,
    color_scheme: Literal["light", "dark"] | None = None,
    offline: bool = False,
    home: Path | None = None,
) -> AsyncIterator[Any]:
    """A Chromium page at `url`; on exit, asserts that no JavaScript error was raised.

    `offline`: requests to any origin but `url`'s are aborted; `page.blocked` lists them.
    `home`: Chromium's HOME (`trusting_home`: the certificates it trusts).
    """
    env = None if home is None else {**os.environ, "HOME": str(home)}
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, env=env)
        try:
            context = await browser.new_context(
                viewport={"width": width, "height": height}, color_scheme=color_scheme
            )
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.blocked = []
            page.requested = []
            context.on("request", lambda request: page.requested.append(request.url))
            page.on("websocket", lambda socket: page.requested.append(socket.url))
            if offline:
                await _stay_on_origin(page, url)
            await page.goto(url)
            yield page
            assert errors == [], errors
        finally:
            await browser.close()


def trusting_home(directory: Path, ca: Path) -> Path:
    """`directory` made a HOME whose NSS database trusts `ca` to sign servers.

    Skips the test when `certutil` (Debian's `libnss3-tools`) is missing.
    """
    certutil = shutil.which("certutil")
    if certutil is None:
        pytest.skip("no certutil to trust the test CA (Debian package `libnss3-tools`)")
    database = directory / ".pki" / "nssdb"
    database.mkdir(parents=True, exist_ok=True)
    for arguments in (
        ["-N", "--empty-password"],
        ["-A", "-t", "C,,", "-n", "mesh-ca", "-i", str(ca)],
    ):
        subprocess.run(
            [certutil, "-d", f"sql:{database}", *arguments],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return directory


def origin(url: str) -> str:
    """`scheme://host:port` of a URL."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _stay_on_origin(page: Any, url: str) -> None:
    own = origin(url)

    async def route(request_route: Any) -> None:
        requested = request_route.request.url
        if requested.startswith("data:") or origin(requested) == own:
            await request_route.continue_()
        else:
            page.blocked.append(requested)
            await request_route.abort()

    await page.route("**/*", route)
