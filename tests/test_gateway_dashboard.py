"""The dashboard in real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from gateway._schema import KIND_COLUMNS
from mesh_common import thresholds
from mesh_common.addresses import HostPort
from mesh_common.figures import KIND_FIGURES, columns
from metricsmesh_cli.top import watch
from tests.browser import ARTIFACTS, open_page, playwright_api
from tests.gateway_mesh import Mesh

Page = playwright_api.Page


def cell(service: str, field: str) -> str:
    return f'#rows tr[data-service="{service}"] td[data-field="{field}"]'


async def test_fifteen_rows_render_and_numbers_follow_the_events(mesh: Mesh, page: Page) -> None:
    expect = playwright_api.expect
    await expect(page.locator("#rows tr[data-service]")).to_have_count(15, timeout=10_000)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    await expect(page.locator(cell("weather-api", "status") + " .badge")).to_have_text("active")
    await expect(page.locator(cell("weather-api", "service_type"))).to_have_text("data")
    await expect(page.locator(cell("weather-api", "total_events"))).to_have_text("0")
    for name, count in (("weather-api", 40), ("websocket-ingestion", 120), ("admin-api", 9)):
        mesh.tracker(name).record(n=count)
    await expect(page.locator(cell("weather-api", "total_events"))).to_have_text(
        "40", timeout=10_000
    )
    await expect(page.locator(cell("websocket-ingestion", "total_events"))).to_have_text("120")
    await expect(page.locator(cell("weather-api", "events_per_second"))).not_to_have_text("0.00")
    await expect(page.locator("#sys-eps")).not_to_have_text("0.00")
    await expect(page.locator(cell("weather-api", "last_activity"))).not_to_have_text("never")
    await expect(page.locator("#sys-active")).to_have_text("15")
    await expect(page.locator("#banner")).to_be_hidden()
    # The columns are the row schema's: its labels as headings, its descriptions as tooltips.
    for figure in columns():
        heading = page.locator(f'#head-row th[data-field="{figure.name}"]')
        await expect(heading).to_have_text(figure.label)
        await expect(heading).to_have_attribute("title", figure.description)
    # More events later, so the sparklines show movement in the screenshot.
    for name, count in (("weather-api", 25), ("energy-correlator", 60), ("sports-data", 15)):
        mesh.tracker(name).record(n=count)
    await expect(page.locator(cell("weather-api", "total_events"))).to_have_text(
        "65", timeout=10_000
    )
    await mesh.agents["calendar-service"].stop(0)
    await expect(page.locator(cell("calendar-service", "status") + " .badge")).to_have_text(
        "inactive", timeout=10_000
    )
    # Its last known figures stay, dimmed, with their age counting up.
    await expect(page.locator(cell("calendar-service", "status") + " .seen")).to_have_text(
        re.compile(r"last seen \d+ s ago")
    )
    await expect(page.locator(cell("calendar-service", "error_message"))).not_to_be_empty()
    await expect(page.locator("#sys-down")).to_have_text("1 down:calendar-service")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


async def test_a_lost_aggregator_shows_a_banner_and_recovery_clears_it(
    mesh: Mesh, page: Page
) -> None:
    expect = playwright_api.expect
    await expect(page.locator("#rows tr[data-service]")).to_have_count(15, timeout=10_000)
    await mesh.stop_aggregator()
    banner = page.locator("#banner")
    await expect(banner).to_be_visible(timeout=10_000)
    await expect(banner).to_contain_text(str(mesh.aggregator_port))
    await expect(page.locator("#conn")).to_have_attribute("data-state", "down")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-down.png"), full_page=True)
    await mesh.start_aggregator()
    await expect(banner).to_be_hidden(timeout=10_000)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")


async def test_polling_takes_over_when_the_stream_is_unavailable(mesh: Mesh, page: Page) -> None:
    expect = playwright_api.expect
    await expect(page.locator("#rows tr[data-service]")).to_have_count(15, timeout=10_000)
    # Block the SSE endpoint only: the page must fall back to polling the REST endpoint.
    await page.route("**/real-time-metrics/stream*", lambda route: route.abort())
    await page.reload()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "polling", timeout=10_000)
    await expect(page.locator("#rows tr[data-service]")).to_have_count(15, timeout=10_000)
    mesh.tracker("air-quality-service").record(n=11)
    await expect(page.locator(cell("air-quality-service", "total_events"))).to_have_text(
        "11", timeout=15_000
    )


async def test_failing_and_slow_services_stand_out_and_a_row_opens_its_detail(
    mesh: Mesh, page: Page
) -> None:
    expect = playwright_api.expect
    await expect(page.locator("#rows tr[data-service]")).to_have_count(15, timeout=10_000)
    tracker = mesh.tracker("air-quality-service")
    for index in range(40):  # 10 % of them fail, every one takes 2.5 s
        tracker.observe("fetch", 2.5, error=index % 10 == 0)
    for _ in range(20):
        tracker.observe("parse", 0.004)
    errors = page.locator(cell("air-quality-service", "error_rate"))
    await expect(errors).to_have_text("6.7%", timeout=10_000)  # 4 of 60 events
    await expect(errors).to_have_attribute("data-level", "bad")
    await expect(page.locator(cell("air-quality-service", "latency_p95_ms"))).to_have_attribute(
        "data-level", "bad"
    )
    # Failing services come first.
    await expect(page.locator("#rows tr[data-service]").first).to_have_attribute(
        "data-service", "air-quality-service"
    )
    await page.locator('#rows tr[data-service="air-quality-service"]').click()
    detail = page.locator("#detail")
    await expect(detail).to_be_visible()
    await expect(page.locator("#detail-title")).to_have_text("air-quality-service")
    fetch = page.locator('#detail-kinds tr[data-kind="fetch"]')
    await expect(fetch.locator('td[data-field="error_rate"]')).to_have_text("10%")
    await expect(
        page.locator('#detail-kinds tr[data-kind="parse"] td[data-field="error_rate"]')
    ).to_have_text("0%")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"), full_page=True)


# --- one definition of the thresholds, served to the dashboard, read by the CLI -------------


async def test_the_schema_serves_the_thresholds_stale_age_and_kind_columns_as_defined(
    mesh: Mesh,
) -> None:
    body = (await mesh.http.get("/api/v1/schema")).json()
    assert {"rows", "totals"} <= body.keys()  # the row schema, as before
    assert body["thresholds"] == {
        name: {"warn": levels.warn, "bad": levels.bad}
        for name, levels in thresholds.WARNING_LEVELS.items()
    }
    assert body["thresholds"]["error_rate"] == {"warn": 0.01, "bad": 0.05}
    assert body["stale_seconds"] == thresholds.STALE_SECONDS == 10.0
    assert [kind["name"] for kind in body["kinds"]] == [figure.name for figure in KIND_FIGURES]
    shown = sorted((kind for kind in body["kinds"] if kind["column"]), key=lambda k: k["column"])
    assert tuple(kind["name"] for kind in shown) == KIND_COLUMNS


def recording_console() -> Console:
    return Console(record=True, file=io.StringIO(), width=220, force_terminal=True)


async def test_changing_the_one_threshold_definition_changes_the_dashboard_and_the_cli(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10 % of the events fail: "bad" by the shipped levels, only "warn" by these.
    levels = {**thresholds.WARNING_LEVELS, "error_rate": thresholds.Levels(warn=0.05, bad=0.5)}
    monkeypatch.setattr(thresholds, "WARNING_LEVELS", levels)
    tracker = mesh.tracker("air-quality-service")
    for index in range(40):
        tracker.observe("fetch", 0.01, error=index % 10 == 0)
    expect = playwright_api.expect
    async with open_page(mesh.url + "/") as page:
        errors = page.locator(cell("air-quality-service", "error_rate"))
        await expect(errors).to_have_text("10%", timeout=10_000)
        await expect(errors).to_have_attribute("data-level", "warn")
        kind = page.locator('#detail-kinds tr[data-kind="fetch"] td[data-field="error_rate"]')
        await page.locator('#rows tr[data-service="air-quality-service"]').click()
        await expect(kind).to_have_attribute("data-level", "warn")
    console, problems = recording_console(), recording_console()
    target = HostPort("127.0.0.1", mesh.aggregator_port)
    assert await watch(target, console, problems, services=["air-quality-service"], count=1) == 0
    styled = console.export_text(styles=True)
    assert "\x1b[33m10.0%" in styled  # yellow: warn
    assert "\x1b[1;31m10.0%" not in styled  # not bold red: bad


async def test_figures_older_than_the_served_stale_age_are_called_stale(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thresholds, "STALE_SECONDS", 0.0)  # every snapshot is old at once
    expect = playwright_api.expect
    async with open_page(mesh.url + "/") as page:
        await expect(page.locator("#rows tr[data-service]")).to_have_count(15, timeout=10_000)
        await expect(page.locator("#banner-title")).to_have_text("Data is stale.")
        await expect(page.locator("#banner")).to_be_visible()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "stale")


# --- a browser without storage, zero spans ---------------------------------------------------

# Storage refused as a browser with site data blocked refuses it: reading the property throws.
BLOCK_STORAGE = """
Object.defineProperty(window, "localStorage", {
  configurable: true,
  get() { throw new DOMException("The operation is insecure.", "SecurityError"); },
});
"""


async def test_the_dashboard_works_where_the_browser_refuses_storage(
    mesh: Mesh, page: Page
) -> None:
    expect = playwright_api.expect
    await page.add_init_script(BLOCK_STORAGE)
    await page.reload()  # the modules load again, storage refused from the start
    refused = "(() => { try { localStorage; return false; } catch { return true; } })()"
    assert await page.evaluate(refused)
    await expect(page.locator("#rows tr[data-service]")).to_have_count(15, timeout=10_000)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    # Sorting and the range work; they are just not remembered.
    heading = page.locator('#head-row th[data-field="service_name"]')
    await heading.click()
    await expect(heading).to_have_attribute("aria-sort", "ascending")
    await page.locator('#range button[data-range="1h"]').click()
    await expect(page.locator("#trend-head")).to_have_text("Trend · 1 h")


async def test_a_span_of_zero_seconds_reads_0s_and_no_value_reads_a_dash(page: Page) -> None:
    written = await page.evaluate(
        """async () => {
            const { duration } = await import("/static/format.js");
            return [duration(0), duration(0.4), duration(null), duration(undefined), duration(75)];
        }"""
    )
    no_value = "\u2013"  # an en dash
    assert written == ["0s", "0s", no_value, no_value, "1m 15s"]
