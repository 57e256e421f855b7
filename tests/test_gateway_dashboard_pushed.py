"""The dashboard shows a pushed row like a polled one, without a port it does not have.

Real Chromium on the real gateway of an ingestion mesh: one polled agent, one pushed service
(seed 004's event body, posted to the gateway).
"""

from __future__ import annotations

from tests.browser import open_page, playwright_api
from tests.ingest_mesh import AGENT_NAME, ingest_mesh

ROWS = "#rows tr[data-service]"
EVENT = {"event_type": "user_login", "user_id": 1, "metadata": {"browser": "chrome"}}


async def test_a_pushed_row_shows_its_type_and_no_port() -> None:
    async with ingest_mesh() as mesh:
        response = await mesh.http.post("/metrics/events", json=EVENT)
        assert response.status_code == 201, response.text
        mesh.tick(1.0)
        await mesh.round()
        async with open_page(mesh.url + "/") as page:
            expect = playwright_api.expect
            await expect(page.locator(ROWS)).to_have_count(2, timeout=10_000)
            pushed = page.locator('#rows tr[data-service="metrics-service"]')
            await expect(pushed.locator("td").first).to_have_text("metrics-service")
            await expect(pushed).to_contain_text("pushed")
            polled = page.locator(f'#rows tr[data-service="{AGENT_NAME}"] td').first
            await expect(polled).to_have_text(f"{AGENT_NAME}:8009")
