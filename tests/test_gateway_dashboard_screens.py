"""The operator's dashboard in real Chromium: sorting, the summary, trends, themes, a phone.

Against a real mesh (15 agents, the aggregator, the gateway); every check is something a
person sees: the order of the rows after clicking a heading, the names in the summary, the
tooltip's words, the span of a sparkline, the colours of each theme, a 420 px wide window,
the stale banner's age. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.browser import artifact, open_page, playwright_api
from tests.eventually import eventually
from tests.gateway_mesh import ROUND_SECONDS, Mesh

pytestmark = pytest.mark.mesh(wait="all_active")

ROWS = "#rows tr[data-service]"


async def shown(page: Any) -> None:
    await playwright_api.expect(page.locator(ROWS)).to_have_count(15, timeout=10_000)
    await playwright_api.expect(page.locator("#conn")).to_have_attribute(
        "data-state", "live", timeout=10_000
    )


async def order(page: Any) -> list[str]:
    names: list[str] = await page.eval_on_selector_all(
        ROWS, "rows => rows.map(row => row.dataset.service)"
    )
    return names


async def totals(page: Any) -> dict[str, str]:
    cells: dict[str, str] = await page.eval_on_selector_all(
        ROWS,
        """rows => Object.fromEntries(rows.map(row => [row.dataset.service,
            row.querySelector('td[data-field="total_events"]').textContent]))""",
    )
    return cells


async def test_clicking_a_heading_sorts_stably_and_the_order_survives_updates(mesh: Mesh) -> None:
    expect = playwright_api.expect
    for name, count in (("weather-api", 30), ("admin-api", 70), ("sports-data", 50)):
        mesh.tracker(name).record(n=count)
    async with open_page(mesh.url + "/") as page:
        await shown(page)
        admin_total = '#rows tr[data-service="admin-api"] td[data-field="total_events"]'
        await expect(page.locator(admin_total)).to_have_text("70", timeout=10_000)
        default = await order(page)
        heading = page.locator('#head-row th[data-field="total_events"]')
        await heading.click()
        await expect(heading).to_have_attribute("aria-sort", "descending")
        await expect(heading.locator(".sort-mark")).to_have_text("▼")
        await expect(page.locator(ROWS).nth(0)).to_have_attribute("data-service", "admin-api")
        busiest = ["admin-api", "sports-data", "weather-api"]
        idle = [name for name in default if name not in busiest]

        async def stable() -> bool:
            # Ties (every other service has 0 events) keep the default order: a stable sort.
            # (Polled: a loaded machine may let an agent miss a round's deadline meanwhile.)
            return await order(page) == busiest + idle

        await eventually(stable, what="the busiest first, the rest in the default order")
        # New figures arrive: the order follows them and stays sorted by the column.
        mesh.tracker("weather-api").record(n=100)
        await expect(page.locator(ROWS).nth(0)).to_have_attribute(
            "data-service", "weather-api", timeout=10_000
        )
        await expect(heading).to_have_attribute("aria-sort", "descending")
        # Again: ascending (the busiest last); a third time: the default order again.
        await heading.click()
        await expect(heading.locator(".sort-mark")).to_have_text("▲")
        await expect(page.locator(ROWS).nth(14)).to_have_attribute("data-service", "weather-api")
        await heading.click()
        await expect(heading).to_have_attribute("aria-sort", "none")

        async def back_to_default() -> bool:
            return await order(page) == default

        await eventually(back_to_default, what="the default order again")
        # A text column sorts A to Z first; the choice survives a reload.
        await page.locator('#head-row th[data-field="service_name"]').click()
        await expect(page.locator(ROWS).nth(0)).to_have_attribute("data-service", "admin-api")
        await page.reload()
        await shown(page)
        names = await order(page)
        assert names == sorted(names)


async def test_the_summary_names_down_services_and_the_title_names_the_fleet(
    mesh: Mesh,
) -> None:
    expect = playwright_api.expect
    async with open_page(mesh.url + "/") as page:
        await shown(page)
        await expect(page).to_have_title("metrics-mesh — 15 services")
        await expect(page.locator("#fleet-title")).to_have_text("metrics-mesh — 15 services")
        await expect(page.locator("#sys-down")).to_have_text("all services active")
        mesh.tracker("calendar-service").record(n=12)
        await expect(
            page.locator('#rows tr[data-service="calendar-service"] td[data-field="total_events"]')
        ).to_have_text("12", timeout=10_000)
        await mesh.agents["calendar-service"].stop(0)
        await mesh.agents["weather-api"].stop(0)
        down = page.locator("#sys-down")
        await expect(down.locator(".down-chip")).to_have_count(2, timeout=10_000)
        await expect(down).to_contain_text("2 down:")
        await expect(down).to_contain_text("calendar-service")
        await expect(down).to_contain_text("weather-api")
        await expect(page).to_have_title("(2 down) metrics-mesh — 15 services")

        # Down services come first, their last known figures dimmed, with their age.
        async def down_first() -> bool:
            return set((await order(page))[:2]) == {"calendar-service", "weather-api"}

        await eventually(down_first, what="the down services first")
        row = page.locator('#rows tr[data-service="calendar-service"]')
        await expect(row.locator('td[data-field="total_events"]')).to_have_text("12")
        opacity = await row.locator('td[data-field="total_events"]').evaluate(
            "td => getComputedStyle(td).opacity"
        )
        assert float(opacity) < 1
        seen = row.locator(".seen")
        await expect(seen).to_have_text(re.compile(r"^last seen \d+ s ago$"))
        first = int(re.findall(r"\d+", await seen.text_content() or "")[0])
        await expect(seen).not_to_have_text(f"last seen {first} s ago", timeout=5_000)
        # A chip opens the service's detail.
        await down.locator(".down-chip", has_text="weather-api").click()
        await expect(page.locator("#detail-title")).to_have_text("weather-api")
        await expect(page.locator("#detail-status .seen")).to_contain_text("last seen")


async def spark_start(page: Any, selector: str) -> float:
    """Where a sparkline's line starts, as a fraction of its width (1: only at the right)."""
    start: float = await page.eval_on_selector(
        selector,
        """svg => {
            const xs = [...svg.querySelectorAll('polyline')].flatMap(line =>
                line.getAttribute('points').split(' ').map(p => Number(p.split(',')[0])));
            return xs.length ? Math.min(...xs) / Number(svg.dataset.width) : 1;
        }""",
    )
    return start


async def test_the_range_selector_changes_the_span_and_the_past_comes_back_on_reload(
    mesh: Mesh,
) -> None:
    expect = playwright_api.expect
    clock_time = r"\d\d:\d\d"
    async with open_page(mesh.url + "/") as page:
        await shown(page)
        await page.locator('#range button[data-range="15m"]').click()
        await expect(page.locator('#range button[data-range="15m"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        axis = re.compile(f"^{clock_time}{clock_time}now$")
        await expect(page.locator("#sys-axis")).to_have_text(axis)
        await expect(page.locator("#trend-head")).to_have_text("Trend · 15 min")
        # This mesh keeps no history: the live ring alone, and the note says so.
        await expect(page.locator("#range-note")).to_have_text(
            "history unavailable: live trend only", timeout=10_000
        )

        async def some_seconds_drawn() -> list[float] | None:
            start = await spark_start(page, "#sys-spark")
            return [start] if start < 0.99 else None  # about 9 s of the 15 minutes

        [fifteen] = await eventually(some_seconds_drawn, timeout=30, what="9 s of history")
        await page.locator('#range button[data-range="1h"]').click()
        await expect(page.locator("#sys-axis")).to_have_text(axis)
        await expect(page.locator("#trend-head")).to_have_text("Trend · 1 h")
        hour = await spark_start(page, "#sys-spark")
        assert hour > fifteen  # the same seconds take a quarter of the width
        assert 1 - hour < (1 - fifteen) / 3
        row_start = await spark_start(page, '#rows tr[data-service="admin-api"] svg')
        assert row_start > 0.9
        # The range is remembered, and the past comes back from the gateway's ring.
        await page.locator('#range button[data-range="15m"]').click()
        before = await spark_start(page, "#sys-spark")
        await page.reload()
        await shown(page)
        await expect(page.locator("#trend-head")).to_have_text("Trend · 15 min")

        async def past_drawn() -> bool:
            return await spark_start(page, "#sys-spark") <= before + 0.005

        await eventually(past_drawn, timeout=10, what="the replayed history drawn")


async def test_hovering_a_sparkline_tells_time_and_value(mesh: Mesh) -> None:
    expect = playwright_api.expect
    tracker = mesh.tracker("air-quality-service")
    for index in range(40):
        tracker.observe("fetch", 0.25, error=index % 4 == 0)
    async with open_page(mesh.url + "/", width=1200, height=900) as page:
        await shown(page)
        tip = page.locator("#spark-tip")
        spark = page.locator("#sys-spark")
        box = await spark.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
        await expect(tip).to_be_visible()
        await expect(tip).to_have_text(re.compile(r"^\d\d:\d\d:\d\d · [\d.,]+ events/s$"))
        cursor = spark.locator(".cursor")  # a vertical line at the sample, at the right edge
        await expect(cursor).not_to_have_css("display", "none")
        await expect(cursor).to_have_attribute("x1", re.compile(r"^19\d"))
        # A row's sparkline, then the detail's error trend.
        row_spark = page.locator('#rows tr[data-service="air-quality-service"] svg')
        rate_tip = re.compile(r"^\d\d:\d\d:\d\d · [\d.,]+ events/s$")

        async def tip_with_a_rate() -> str | None:
            # On a loaded machine the newest sample may be a round the agent missed (its tip
            # says `inactive`): hover again as new samples arrive until one had a rate.
            await row_spark.hover(position={"x": 118, "y": 10})
            text = await tip.text_content() or ""
            return text if rate_tip.match(text) else None

        await eventually(tip_with_a_rate, what="a rate in the row sparkline's tooltip")
        await page.locator('#rows tr[data-service="air-quality-service"]').click()
        errors = page.locator("#detail-errors")
        await errors.scroll_into_view_if_needed()
        box = await errors.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)
        await expect(tip).to_have_text(re.compile(r"^\d\d:\d\d:\d\d · 25[.,]0 % failed$"))
        await page.screenshot(path=artifact("dashboard-tooltip.png"))
        await page.mouse.move(5, 5)
        await expect(tip).to_be_hidden()


async def background(page: Any) -> str:
    colour: str = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    return colour


async def test_light_and_dark_follow_the_system(mesh: Mesh) -> None:
    mesh.tracker("websocket-ingestion").record(n=90)
    colours = {}
    for scheme in ("light", "dark"):
        async with open_page(mesh.url + "/", color_scheme=scheme) as page:
            await shown(page)
            colours[scheme] = (
                await background(page),
                await page.eval_on_selector(".panel", "p => getComputedStyle(p).color"),
            )
            await page.screenshot(path=artifact(f"dashboard-{scheme}.png"), full_page=True)
    assert colours["light"][0] != colours["dark"][0]
    assert colours["light"][1] != colours["dark"][1]
    assert colours["light"][0] == "rgb(244, 246, 249)"  # a light page
    assert colours["dark"][0] == "rgb(15, 20, 25)"


async def test_readable_at_420_px_wide(mesh: Mesh) -> None:
    expect = playwright_api.expect
    await mesh.agents["calendar-service"].stop(0)
    async with open_page(mesh.url + "/", width=420, height=900) as page:
        await shown(page)
        await expect(page.locator("#sys-down .down-chip")).to_have_count(1, timeout=10_000)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, f"the page scrolls sideways: {width} px wide"
        fits = await page.evaluate(
            "(() => { const t = document.getElementById('services');"
            " return t.scrollWidth <= t.parentElement.clientWidth; })()"
        )
        assert fits, "the services table scrolls inside its panel"
        row = page.locator('#rows tr[data-service="calendar-service"]')
        for field in ("service_name", "status"):  # the first priorities stay
            await expect(row.locator(f'td[data-field="{field}"]')).to_be_visible()
        for field in ("error_message", "call_latency_ms", "uptime_seconds"):  # the last go
            await expect(row.locator(f'td[data-field="{field}"]')).to_be_hidden()
            await expect(page.locator(f'#head-row th[data-field="{field}"]')).to_be_hidden()
        await page.screenshot(path=artifact("dashboard-420px.png"), full_page=True)
        # Wider again: the hidden columns come back.
        await page.set_viewport_size({"width": 1600, "height": 900})
        await expect(row.locator('td[data-field="error_message"]')).to_be_visible()


async def test_the_error_column_shows_only_while_a_service_has_an_error(mesh: Mesh) -> None:
    expect = playwright_api.expect
    async with open_page(mesh.url + "/", width=1600, height=900) as page:
        await shown(page)
        heading = page.locator('#head-row th[data-field="error_message"]')
        # Every service active: no reason to show, so no empty column taking room.
        await expect(heading).to_be_hidden(timeout=10_000)
        await mesh.agents["calendar-service"].stop(0)
        row = page.locator('#rows tr[data-service="calendar-service"]')
        await expect(heading).to_be_visible(timeout=10_000)
        await expect(row.locator('td[data-field="error_message"]')).not_to_be_empty()


async def test_the_stale_banner_counts_the_snapshots_real_age(mesh: Mesh) -> None:
    expect = playwright_api.expect
    async with open_page(mesh.url + "/") as page:
        await shown(page)
        stopped_at = time.monotonic()
        await mesh.stop_aggregator()
        banner = page.locator("#banner")
        await expect(banner).to_be_visible(timeout=10_000)
        age = page.locator("#banner-age")
        await expect(age).to_have_text(re.compile(r"^The figures below are \d+ s old\.$"))

        def seconds(text: str | None) -> int:
            return int(re.findall(r"\d+", text or "")[0])

        # The gateway calls a snapshot stale after 2 s (this mesh's stale_after_seconds).
        before = time.monotonic() - stopped_at
        first = seconds(await age.text_content())
        after = time.monotonic() - stopped_at
        assert first >= 2
        # The age of the last snapshot: taken at most a round before the stop, the page
        # counting in whole seconds once a second.
        assert before - 1.5 <= first <= after + ROUND_SECONDS + 1.5, (before, first, after)

        async def grown() -> int | None:
            now = seconds(await age.text_content())
            return now if now >= first + 2 else None

        await eventually(grown, timeout=10, what="the banner's age to count up")
        await page.screenshot(path=artifact("dashboard-stale.png"))
        await mesh.start_aggregator()
        await expect(banner).to_be_hidden(timeout=10_000)


# Counts the changes to the banner's live region (role "alert": what a screen reader
# announces), whichever element carries the role.
COUNT_ANNOUNCEMENTS = """
() => {
  const region = document.querySelector("#banner[role=alert], #banner [role=alert]");
  window.announcements = 0;
  new MutationObserver((records) => { window.announcements += records.length; })
    .observe(region, { subtree: true, childList: true, characterData: true, attributes: true });
}
"""


async def test_the_banner_announces_a_change_once_while_its_age_counts_up(mesh: Mesh) -> None:
    expect = playwright_api.expect
    async with open_page(mesh.url + "/") as page:
        await shown(page)
        await page.evaluate(COUNT_ANNOUNCEMENTS)
        await mesh.stop_aggregator()
        await expect(page.locator("#banner")).to_be_visible(timeout=10_000)
        await expect(page.locator("#banner-title")).to_have_text("Metrics unavailable.")
        age = page.locator("#banner-age")
        announced = await page.evaluate("window.announcements")
        assert announced > 0  # the change itself is announced

        def seconds(text: str | None) -> int:
            return int(re.findall(r"\d+", text or "")[0])

        first = seconds(await age.text_content())

        async def counted_up() -> bool:
            return seconds(await age.text_content()) >= first + 3

        await eventually(counted_up, timeout=10, what="the banner's age to count up 3 s")
        # Three seconds of the same message: the age changed, the announced region did not.
        assert await page.evaluate("window.announcements") == announced
        await expect(page.locator("#banner-message")).to_have_attribute("role", "alert")
        await mesh.start_aggregator()
        await expect(page.locator("#banner")).to_be_hidden(timeout=10_000)
