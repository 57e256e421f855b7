"""`metrics-mesh query` as a user runs it, against a real aggregator's history (and the gateway).

The fleet's fake clock starts three minutes before the real time (to the minute), so its two
minutes of rounds are in the past of the command's own clock, which `--since` reads.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from demo_fleet.ports import free_ports
from tests.cli import cli, needs_cli
from tests.history_fleet import LOAD, HistoryFleet, history_fleet, minute_aligned

pytestmark = needs_cli
WEATHER = 'events_per_second{service="weather-api", kind=""}'


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[HistoryFleet]:
    start = minute_aligned(time.time()) - 180
    async with history_fleet(tmp_path, start=start, gateway=True) as running:
        await running.rounds(120)
        yield running


async def test_a_table_row_per_series_with_its_figures(fleet: HistoryFleet) -> None:
    code, out, err = await cli(
        "query", WEATHER, "--aggregator", fleet.address, "--since", "10m", "--step", "1m"
    )
    assert code == 0, err
    (row,) = [line for line in out.splitlines() if line.startswith("│ events_per_second{")]
    assert 'events_per_second{service="weather-api", type="data"}' in row
    cells = [cell.strip() for cell in row.split("│")[2:7]]
    assert cells == ["2", "3", "3", "3", "3"]  # points, min, avg, max, last
    assert "tier 1m:30d" in out


async def test_a_sparkline_per_series(fleet: HistoryFleet) -> None:
    code, out, err = await cli(
        "query", 'events{kind="api_call"}', "--aggregator", fleet.address,
        "--since", "5m", "--step", "10s", "--sparkline",
    )  # fmt: skip
    assert code == 0, err
    rows = [line for line in out.splitlines() if 'kind="api_call", service=' in line]
    assert len(rows) == len(LOAD)
    for row in rows:  # a flat load: full windows at the top, partial ones at the edges lower
        trend = row.split("│")[-2][1:-1]  # blanks where no round fell
        assert len(trend) == 31  # 5 min at 10 s: 31 columns
        drawn = trend.strip()
        assert len(drawn) in (12, 13) and " " not in drawn  # 2 min of rounds, no gap
        # Windows that fall on whole 10 s of rounds (the command's clock decides) are all
        # full: a flat trend is drawn at mid height.
        assert drawn[1:-1] == "█" * (len(drawn) - 2) or drawn == "▄" * len(drawn), drawn


async def test_json_is_the_gateways_answer_to_the_same_range(fleet: HistoryFleet) -> None:
    start, end = str(int(fleet.start) + 60), str(int(fleet.start) + 120)
    code, out, err = await cli(
        "query", 'latency_p99_ms{kind="api_call"}', "--aggregator", fleet.address,
        "--start", start, "--end", end, "--step", "30s", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    async with httpx.AsyncClient(base_url=fleet.gateway_url) as client:
        params = {"query": 'latency_p99_ms{kind="api_call"}', "start": start, "end": end}
        gateway = await client.get("/api/v1/metrics/query/range", params={**params, "step": "30"})
    assert out == gateway.text + "\n"
    assert len(gateway.json()["data"]["result"]) == len(LOAD)


async def test_the_default_step_gives_about_a_hundred_points(fleet: HistoryFleet) -> None:
    code, out, err = await cli("query", WEATHER, "--aggregator", fleet.address, "-o", "json")
    assert code == 0, err  # --since 1h by default: a 60 s step, points for the last 2 minutes
    (series,) = httpx.Response(200, text=out).json()["data"]["result"]
    times = [point[0] for point in series["values"]]
    assert {b - a for a, b in itertools.pairwise(times)} <= {60}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["rate(events[5m])"], "functions like rate(...) are not supported"),
        (['events{host="a"}'], "unknown label 'host'"),
        (["events", "--start", "2100-01-01T00:00:00Z", "--end", "2100-01-02T00:00:00Z"],
         "start_time is in the future"),
        (["events", "--since", "4h", "--step", "1s"], "more than the limit of 11000"),
    ],
)  # fmt: skip
async def test_a_refused_query_exits_2_with_the_aggregators_reason(
    fleet: HistoryFleet, args: list[str], named: str
) -> None:
    code, out, err = await cli("query", *args, "--aggregator", fleet.address)
    assert code == 2
    assert out == ""
    assert named in " ".join(err.split())


async def test_unreadable_options_exit_2_before_any_call() -> None:
    for args in (["events", "--step", "5x"], ["events", "--start", "yesterday"]):
        code, _, err = await cli("query", *args, "--aggregator", "127.0.0.1:9")
        assert code == 2
        assert f"argument {args[1]}: cannot parse {args[2]!r}" in err


async def test_an_unreachable_aggregator_exits_1() -> None:
    (port,) = free_ports(1)
    code, out, err = await cli(
        "query", "events", "--aggregator", f"127.0.0.1:{port}", "--timeout", "5"
    )
    assert code == 1 and out == ""
    assert "cannot reach the aggregator" in err


async def test_help_shows_examples() -> None:
    code, out, _ = await cli("query", "--help")
    assert code == 0
    assert "examples:" in out and "metrics-mesh query 'events_per_second{" in out
