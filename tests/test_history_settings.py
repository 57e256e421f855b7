"""The [history] table: defaults, Graphite's tier syntax, the state directory, backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator import AggregatorServer, AlertSettings, load_config
from aggregator._errors import HistoryQueryError, HistoryStoreError
from aggregator._history import HistorySettings, choose_tier, parse_tiers
from aggregator._history.store import store_opener
from mesh_common.errors import ConfigError
from tests.ports import free_port

HOUR, DAY = 3_600_000, 86_400_000


def test_defaults_keep_a_day_of_rounds_a_month_of_minutes_and_90_days_of_5_minutes() -> None:
    settings = HistorySettings()
    assert settings.enabled and settings.retry_buffer_rounds == 300
    tiers = settings.tier_list
    assert [(t.resolution_ms, t.retention_ms) for t in tiers] == [
        (1000, DAY),
        (60_000, 30 * DAY),
        (300_000, 90 * DAY),
        (HOUR, 90 * DAY),  # the hourly summary, added after the configured tiers
    ]
    assert [t.chunk_ms for t in tiers] == [120_000, HOUR, 5 * HOUR, 60 * HOUR]
    assert [t.summary for t in tiers] == [False, False, False, True]
    assert tiers[-1].text == "1h:90d"


@pytest.mark.parametrize(
    ("tiers", "summary"),
    [
        (["1m:30d", "10m:1y"], "1h:1y"),
        (["1s:1h"], "1h:1h"),
        (["1m:30d", "7m:90d"], None),  # 7 min does not divide an hour
        (["1m:30d", "1h:1y"], None),  # already hourly
        (["1m:30d", "1d:5y"], None),
    ],
)
def test_the_hourly_summary_follows_a_last_tier_that_divides_an_hour(
    tiers: list[str], summary: str | None
) -> None:
    parsed = HistorySettings(tiers=tuple(tiers)).tier_list
    added = [tier.text for tier in parsed if tier.summary]
    assert added == ([] if summary is None else [summary])
    assert [tier.text for tier in parsed if not tier.summary] == tiers


def test_graphite_forms_are_understood() -> None:
    # A bare resolution is seconds, a bare retention a count of points; units are prefixes.
    (minute, five) = parse_tiers(["60:1440", "5min:2weeks"])
    assert (minute.resolution_ms, minute.retention_ms) == (60_000, DAY)
    assert (five.resolution_ms, five.retention_ms) == (300_000, 14 * DAY)
    (year,) = parse_tiers(["1h:1y"])
    assert year.retention_ms == 365 * DAY


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([], "at least one tier"),
        (["1s"], "is not resolution:retention"),
        (["1s:24x"], "unknown unit 'x'"),
        (["0s:1d"], "not a positive duration"),
        (["1m:1d", "90s:2d"], "whole multiple of the one before"),
        (["1m:2d", "5m:1d"], "keep more time than the one before"),
        (["1m:2m", "5m:1d"], "less than one sample"),
    ],
)
def test_a_bad_tier_list_names_the_entry(tiers: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HistorySettings(tiers=tuple(tiers))


def test_the_file_beside_the_alert_store(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(f'[alerts]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    config = load_config(path, environ={})
    assert config.history.database_path(config.alerts.state_dir) == (
        tmp_path / "state" / "history.sqlite3"
    )
    assert config.alerts.state_path.parent == tmp_path / "state"
    explicit = HistorySettings(path=str(tmp_path / "h.db"))
    assert explicit.database_path(config.alerts.state_dir) == tmp_path / "h.db"


def test_the_environment_overrides_the_table(tmp_path: Path) -> None:
    environ = {"METRICS_MESH_HISTORY_TIERS": "1s:1h,1m:1d", "METRICS_MESH_HISTORY_ENABLED": "0"}
    history = load_config(None, environ=environ).history
    assert history.tiers == ("1s:1h", "1m:1d") and not history.enabled


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/x", "scheme 'mysql' is not PostgreSQL's"),
        ("postgresql://host:99999/db", "not a valid URL"),
        ("postgresql://", "names no host and no database"),
    ],
)
def test_a_url_that_is_not_postgresql_is_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HistorySettings(url=url)


def test_a_postgresql_url_selects_the_postgresql_backend_named_without_its_password() -> None:
    url = f"postgresql://mesh:zq9x%2Fwv7k@127.0.0.1:{free_port()}/metrics"
    settings = HistorySettings(url=url)
    AggregatorServer(history=settings, alerts=AlertSettings())  # starts; the writer connects
    with pytest.raises(HistoryStoreError) as caught:
        store_opener(settings)()  # nothing listens there
    said = str(caught.value)
    assert said.startswith(
        f"cannot connect to the history store {url.replace('zq9x%2Fwv7k', '***')}"
    )
    assert "Connection refused" in said
    assert "zq9x" not in said and "wv7k" not in said


def test_url_and_path_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="give one"):
        HistorySettings(url="postgresql://h/db", path="/tmp/h.sqlite3")


def test_a_query_uses_the_coarsest_tier_that_divides_its_step_and_reaches_its_start() -> None:
    tiers = parse_tiers(["1s:24h", "1m:30d", "5m:90d"])
    now = 100 * DAY
    assert choose_tier(tiers, now - HOUR, now, 1000).text == "1s:24h"
    assert choose_tier(tiers, now - HOUR, now, 60_000).text == "1m:30d"
    assert choose_tier(tiers, now - HOUR, now, HOUR).text == "5m:90d"
    assert choose_tier(tiers, now - 7 * DAY, now, 60_000).text == "1m:30d"
    assert choose_tier(tiers, now - 60 * DAY, now, HOUR).text == "5m:90d"
    assert choose_tier(tiers, now - 400 * DAY, now, HOUR).text == "5m:90d"  # beyond: longest


def test_a_step_of_whole_hours_reads_the_hourly_summary() -> None:
    tiers = parse_tiers(["1s:24h", "1m:30d", "5m:90d"], summary=True)
    now = 100 * DAY
    assert choose_tier(tiers, now - 60 * DAY, now, HOUR).text == "1h:90d"
    assert choose_tier(tiers, now - 60 * DAY, now, 3 * HOUR).text == "1h:90d"
    assert choose_tier(tiers, now - 400 * DAY, now, HOUR).text == "1h:90d"
    assert choose_tier(tiers, now - 60 * DAY, now, 1_800_000).text == "5m:90d"
    assert choose_tier(tiers, now - HOUR, now, 60_000).text == "1m:30d"


def test_a_step_finer_than_the_tier_holding_the_range_names_the_tier() -> None:
    tiers = parse_tiers(["1s:24h", "1m:30d", "5m:90d"])
    now = 100 * DAY
    with pytest.raises(HistoryQueryError, match="1m:30d") as caught:
        choose_tier(tiers, now - 7 * DAY, now, 15_000)
    assert caught.value.field == "step"
    assert "not a whole multiple of 60s" in str(caught.value)
