"""The dashboard's detail panel lists the instances of a service of several (real Chromium)."""

from __future__ import annotations

import pytest

from tests.browser import artifact, playwright_api
from tests.gateway_mesh import Mesh

Page = playwright_api.Page
SERVICE = "weather-api"
pytestmark = pytest.mark.mesh(instances={SERVICE: 3}, wait="all_active")


async def test_the_detail_panel_lists_each_instance_with_its_status(mesh: Mesh, page: Page) -> None:
    expect = playwright_api.expect
    first, second, third = mesh.instances[SERVICE]
    for agent, seconds in ((first, 0.004), (second, 0.030), (third, 0.120)):
        for index in range(20):
            agent.tracker.observe("fetch", seconds, error=index == 0 and agent is third)
    gone = f"127.0.0.1:{second.port}"
    await second.stop(0)
    row = page.locator(f'#rows tr[data-service="{SERVICE}"]')
    await expect(row).to_have_count(1, timeout=10_000)  # one row for the three of them
    await expect(row.locator('td[data-field="status"] .instances')).to_have_text(
        "2/3", timeout=10_000
    )
    await row.click()
    await expect(page.locator("#detail-title")).to_have_text(SERVICE)
    await expect(page.locator("#detail-instances-count")).to_have_text(
        "2 of 3 active", timeout=10_000
    )
    lines = page.locator("#detail-instances tbody tr")
    await expect(lines).to_have_count(3)
    addresses = [f"127.0.0.1:{agent.port}" for agent in (first, second, third)]
    for line, address in zip(await lines.all(), addresses, strict=True):
        await expect(line).to_have_attribute("data-instance", address)
    down = page.locator(f'#detail-instances tr[data-instance="{gone}"]')
    await expect(down).to_have_attribute("data-status", "inactive")
    await expect(down.locator(".instance-error")).not_to_be_empty()
    up = page.locator(f'#detail-instances tr[data-instance="{addresses[0]}"]')
    await expect(up.locator('td[data-field="total_events"]')).to_have_text("20")
    await expect(up.locator('td[data-field="status"] .badge')).to_have_text("active")
    slow = page.locator(f'#detail-instances tr[data-instance="{addresses[2]}"]')
    await expect(slow.locator('td[data-field="error_rate"]')).to_have_text("5%")
    await page.screenshot(path=artifact("dashboard-instances.png"), full_page=True)


async def test_a_service_of_one_agent_shows_no_instance_list(mesh: Mesh, page: Page) -> None:
    expect = playwright_api.expect
    row = page.locator('#rows tr[data-service="admin-api"]')
    await expect(row).to_have_count(1, timeout=10_000)
    await row.click()
    await expect(page.locator("#detail-title")).to_have_text("admin-api")
    assert await row.locator(".instances").count() == 0
    await expect(page.locator("#detail-instances-wrap")).to_be_hidden()
