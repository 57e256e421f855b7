"""The dashboard reads the aggregator's history, in real Chromium.

Real agents, a real aggregator keeping its history in a temporary SQLite file under a fake
clock (tests.history_fleet: rounds only when the test runs them, a known load per round) and
the real gateway. A day of rounds five minutes apart, then a minute of rounds a second apart:
the 24 h trend draws the stored steps (one point per 5 minutes, each the fleet's known rate),
every range from 15 min to 90 days is asked with a step the store accepts, the "Events /
hour" card shows the exact count of the events fed in that hour (not events/s x 3600), and
after the aggregator restarts on the same file a reload still draws the day before. Without
history (the `mesh` fixture keeps none) the card says its figure is projected and the trend
notes that it is live only. The browser's clock plays no part: the page asks for times of the
server's snapshots.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aggregator import AggregatorServer, AggregatorSettings
from aggregator._history import HistorySettings
from gateway import GatewaySettings
from tests.browser import artifact, open_page, playwright_api
from tests.eventually import eventually
from tests.gateway_mesh import Mesh, serve_gateway
from tests.history_fleet import LOAD, SERVICES, HistoryFleet, history_fleet
from tests.history_mesh import EPOCH, agents, fake_clocks, registry_of, run_round, tick, tracker

expect = playwright_api.expect
DAY = 86_400
STEP_24H = 300
"""The 24 h range's step (gateway/static/history.js RANGES)."""
EVENTS_PER_ROUND = sum(3 * load for load in LOAD.values())
"""The fleet's events in each round (tests.history_fleet.LOAD)."""
RANGES = ("15m", "1h", "6h", "24h", "7d", "30d", "90d")


async def choose(page: Any, key: str) -> None:
    """Click a range button and wait until its stored points are drawn (or refused)."""
    await page.locator(f'#range button[data-range="{key}"]').click()
    await expect(page.locator(f'#sys-spark[data-drawn="{key}"]')).to_have_count(1, timeout=20_000)


async def a_day_then_a_minute(fleet: HistoryFleet) -> list[float]:
    """288 rounds 5 minutes apart, then 70 rounds a second apart; returns the round times."""
    times = []
    for count, seconds in ((DAY // STEP_24H, STEP_24H), (70, 1.0)):
        for _ in range(count):
            await fleet.rounds(1, seconds)
            times.append(fleet.now())
    return times


def counted_in_hour_before(times: list[float], now: float) -> int:
    """The events the card counts: rounds in the 60 whole minutes ending 3 s before `now`."""
    end = (now - 3) // 60 * 60
    return EVENTS_PER_ROUND * sum(1 for t in times if end - 3600 < t <= end)


@pytest.fixture
async def day(tmp_path: Path) -> AsyncIterator[tuple[HistoryFleet, list[float]]]:
    async with history_fleet(tmp_path, start=EPOCH, gateway=True) as fleet:
        yield fleet, await a_day_then_a_minute(fleet)


async def test_the_24h_trend_draws_the_stored_steps_and_the_hour_card_counts_the_load(
    day: tuple[HistoryFleet, list[float]],
) -> None:
    fleet, times = day
    async with open_page(fleet.gateway_url + "/") as page:
        await fleet.rounds(1, 1.0)  # a fresh snapshot for the page
        times.append(fleet.now())
        await choose(page, "24h")
        await expect(page.locator('#range button[data-range="24h"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(page.locator("#trend-head")).to_have_text("Trend · 24 h")
        # One stored point per 5 minutes of the day: 288, on the fleet's and every row's.
        await expect(page.locator("#sys-spark")).to_have_attribute("data-stored", "288")
        for name in SERVICES:
            row_spark = page.locator(f'#rows tr[data-service="{name}"] svg')
            await expect(row_spark).to_have_attribute("data-stored", "288")
        await expect(page.locator("#range-note")).to_have_text("")
        # Hovering the middle of the day reads the stored rate: 12 events per 5 minutes.
        spark = page.locator("#sys-spark")
        box = await spark.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        tip = page.locator("#spark-tip")
        assert EVENTS_PER_ROUND / STEP_24H == 0.04
        await expect(tip).to_have_text(re.compile(r"^\w+ \d\d:\d\d · 0[.,]04 events/s$"))
        # The axis writes days and times for a day (the browser's time zone).
        day_time = r"\w+ \d\d:\d\d"
        await expect(page.locator("#sys-axis")).to_have_text(
            re.compile(f"^{day_time}{day_time}now$")
        )
        # The card: the exact count of the events fed in the last whole hour.
        expected = counted_in_hour_before(times, fleet.now())
        assert expected == (12 + 60) * EVENTS_PER_ROUND
        await expect(page.locator("#sys-eph")).to_have_text(str(expected))
        await expect(page.locator("#sys-eph-note")).to_contain_text("counted")
        # A row's detail: its error % and p95 over the day, from the store too.
        await page.locator('#rows tr[data-service="weather-api"]').click()
        for trend in ("#detail-eps", "#detail-errors", "#detail-p95"):
            await expect(page.locator(trend)).to_have_attribute("data-stored", "288")
        errors = page.locator("#detail-errors")
        box = await errors.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await expect(tip).to_have_text(re.compile(r"^\w+ \d\d:\d\d · 33[.,]3 % failed$"))
        await page.screenshot(path=artifact("dashboard-history-24h.png"), full_page=True)


async def test_refreshes_ask_only_the_steps_closed_since_one_fetch_at_a_time(
    day: tuple[HistoryFleet, list[float]],
) -> None:
    fleet, _ = day
    async with open_page(fleet.gateway_url + "/") as page:
        await fleet.rounds(1, 1.0)
        await choose(page, "15m")
        asked: list[dict[str, str]] = []
        in_flight = [0, 0]  # now, most

        def trends_query(request: Any) -> dict[str, str] | None:
            """The parameters of a range query of the trends (not the Events / hour card's)."""
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
            trends = "/query/range" in request.url and query["query"].startswith("events_per")
            return query if trends else None

        def started(request: Any) -> None:
            if query := trends_query(request):
                asked.append(query)
                in_flight[0] += 1
                in_flight[1] = max(in_flight)

        def ended(request: Any) -> None:
            if trends_query(request):
                in_flight[0] -= 1

        page.on("request", started)
        page.on("requestfinished", ended)
        page.on("requestfailed", ended)
        for _ in range(30):  # 30 s of rounds: six 5 s steps close
            await fleet.rounds(1, 1.0)
            await expect(page.locator("#meta-seq")).to_have_text(f"snapshot #{await seq(fleet)}")
        await eventually(lambda: len(asked) >= 6, what="a fetch per closed step")
        assert in_flight[1] == 1, asked
        assert 6 <= len(asked) <= 7, asked
        for query in asked:  # each asks one step (or two), not the 15 minutes again
            assert float(query["end"]) - float(query["start"]) <= 5, query
            assert query["step"] == "5"


async def test_every_range_asks_a_step_the_store_accepts(
    day: tuple[HistoryFleet, list[float]],
) -> None:
    fleet, _ = day
    async with open_page(fleet.gateway_url + "/") as page:
        await fleet.rounds(1, 1.0)
        for key in RANGES:
            await choose(page, key)
            await expect(page.locator("#range-note")).to_have_attribute("data-state", "ok")
            stored = int(await page.locator("#sys-spark").get_attribute("data-stored") or 0)
            assert stored > 0, key


async def ready(url: str) -> bool:
    """The gateway's subscription is up with a fresh snapshot."""
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url + "health/ready")).status_code == 200


async def seq(fleet: HistoryFleet) -> int:
    """The sequence of the aggregator's latest snapshot."""
    latest = fleet.server.loop.latest
    assert latest is not None
    return latest.sequence


@contextlib.asynccontextmanager
async def aggregator_on(registry: Any, path: Path, clocks: Any, port: int) -> AsyncIterator[Any]:
    """A real aggregator (rounds on demand) on `port` (0: any) writing history to `path`."""
    settings = AggregatorSettings(
        port=port, interval_seconds=10.0, deadline_seconds=5.0, min_round_spacing_seconds=0.0
    )
    server = AggregatorServer(
        registry,
        settings,
        clocks=clocks,
        interval_rounds=False,
        history=HistorySettings(path=str(path)),
    )
    async with server:
        yield server


async def test_after_an_aggregator_restart_a_reload_draws_the_day_before(
    tmp_path: Path,
) -> None:
    monotonic, wall, clocks = fake_clocks(EPOCH)
    trackers = [tracker(name, monotonic, wall) for name in SERVICES]
    path = tmp_path / "history.sqlite3"

    async def day_of_rounds(server: AggregatorServer, count: int, seconds: float) -> None:
        for _ in range(count):
            tick(monotonic, wall, seconds)
            for each in trackers:
                each.record("api_call")
            await run_round(server)

    async with agents(trackers) as servers:
        registry = registry_of(servers, list(SERVICES.values()))
        async with aggregator_on(registry, path, clocks, 0) as first:
            port = int(first.address.rsplit(":", 1)[1])
            settings = GatewaySettings(
                aggregator=first.address,
                reconnect_initial_seconds=0.05,
                reconnect_max_seconds=0.5,
            )
            async with serve_gateway(settings) as (_, gateway_port):
                url = f"http://127.0.0.1:{gateway_port}/"
                await day_of_rounds(first, DAY // STEP_24H, STEP_24H)
                async with open_page(url) as page:
                    await day_of_rounds(first, 5, 1.0)  # past the last step's settling
                    await choose(page, "24h")
                    await expect(page.locator("#sys-spark")).to_have_attribute("data-stored", "288")
                    await first.stop(0)
                    tick(monotonic, wall, 60.0)
                    async with aggregator_on(registry, path, clocks, port) as second:

                        async def round_seen() -> bool:
                            try:  # the process's channels share a subchannel in backoff
                                await day_of_rounds(second, 1, 1.0)
                            except grpc.aio.AioRpcError as error:
                                if error.code() != grpc.StatusCode.UNAVAILABLE:
                                    raise
                                return False
                            return await ready(url)

                        await eventually(round_seen, what="the gateway to reconnect")
                        await day_of_rounds(second, 5, 1.0)
                        await page.reload()
                        # The range is remembered; the day comes from the file, not a ring.
                        await expect(page.locator("#sys-spark")).to_have_attribute(
                            "data-drawn", "24h", timeout=20_000
                        )
                        await day_of_rounds(second, 1, 1.0)
                        await expect(page.locator("#sys-spark")).to_have_attribute(
                            "data-stored", "288"
                        )


async def test_without_history_the_card_says_projected_and_the_trend_live_only(
    mesh: Mesh,
) -> None:
    async with open_page(mesh.url + "/") as page:
        await expect(page.locator("#rows tr[data-service]")).to_have_count(15, timeout=10_000)
        note = page.locator("#range-note")
        await expect(note).to_have_text("history unavailable: live trend only", timeout=10_000)
        await expect(note).to_have_attribute("data-state", "unavailable")
        card = page.locator("#sys-eph").locator("xpath=..")
        await expect(card).to_have_attribute("data-source", "projected")
        await expect(page.locator("#sys-eph-note")).to_contain_text(
            "projected (events/s \u00d7 3600)"
        )
        # Why, in the gateway's words, on hover.
        await expect(page.locator("#sys-eph-note")).to_have_attribute(
            "title", re.compile("history is disabled")
        )
        await expect(page.locator("#sys-eph")).not_to_have_text("\u2013")  # the dash of no figure
