"""/docs (Swagger UI) and /redoc in real Chromium with every other origin blocked (no internet)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import metadata

import httpx
import pytest

import mesh_common.version
from gateway import GatewaySettings, create_app
from tests.browser import artifact, open_page, origin, playwright_api
from tests.gateway_mesh import Mesh

pytestmark = pytest.mark.mesh(wait="nothing")


async def test_swagger_ui_renders_its_operations_offline(mesh: Mesh) -> None:
    expect = playwright_api.expect
    async with open_page(mesh.url + "/docs", offline=True) as page:
        operation = page.locator(".opblock-summary", has_text="/api/v1/real-time-metrics").first
        await expect(operation).to_be_visible(timeout=15_000)
        await expect(operation.locator(".opblock-summary-method")).to_have_text("GET")
        await expect(page.locator(".info .title")).to_contain_text("metrics-mesh gateway")
        await operation.click()  # opens: the parameters of the endpoint are listed
        await expect(
            page.locator(".parameters-col_name", has_text="services").first
        ).to_be_visible()
        await page.screenshot(path=artifact("docs-swagger.png"))
        assert page.blocked == [], f"the page asked other origins for {page.blocked}"


async def test_redoc_renders_offline(mesh: Mesh) -> None:
    expect = playwright_api.expect
    async with open_page(mesh.url + "/redoc", offline=True) as page:
        await expect(page.locator("h1", has_text="metrics-mesh gateway")).to_be_visible(
            timeout=15_000
        )
        operation = page.get_by_role(
            "heading", name="Consolidated real-time metrics of every configured service"
        )
        await expect(operation).to_be_visible()
        await expect(page.get_by_role("menuitem", name="metrics")).to_be_visible()
        await page.screenshot(path=artifact("docs-redoc.png"))
        assert page.blocked == [], f"the page asked other origins for {page.blocked}"


async def test_the_pages_and_their_assets_come_from_the_gateway(mesh: Mesh) -> None:
    for path in ("/docs", "/redoc"):
        page = await mesh.http.get(path)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        sources = re.findall(r'(?:src|href)="([^"]*)"', page.text)
        assert sources and all(source.startswith("/") for source in sources), sources
        for source in sources:
            asset = await mesh.http.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 1000, source
        # The browser itself refuses anything from another origin on these pages.
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
    assert origin(mesh.url) == mesh.url
    # The guard still answers only for allowed hosts, the docs included.
    refused = await mesh.http.get("/docs", headers={"Host": "evil.example"})
    assert refused.status_code == 400


@pytest.fixture
def released_as_9_8_7(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The package metadata says 9.8.7, as a later release's would."""
    monkeypatch.setattr(metadata, "version", lambda name: "9.8.7")
    mesh_common.version.version.cache_clear()
    yield "9.8.7"
    mesh_common.version.version.cache_clear()


async def test_the_openapi_document_has_the_installed_version(released_as_9_8_7: str) -> None:
    """One version: the one `--version` prints and `metricsmesh_build_info` carries."""
    transport = httpx.ASGITransport(app=create_app(GatewaySettings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        document = (await http.get("/openapi.json")).json()
    assert document["info"]["version"] == mesh_common.version.version() == released_as_9_8_7
