"""The PostgreSQL backend's own behaviour, on a real server (tests/postgres_server.py).

Seed 004's "Get service health" SQL, read from the document, runs unchanged on the
`system_metrics` view of a store filled by a real aggregator's rounds and answers what the
store's figures say; the server stopped mid-run (`pg_ctl stop -m immediate`) and started again
costs no round and no event; a password in the URL is never printed. The store-level tests
shared with SQLite (exactness, restarts, rollups, retention, failures) are parametrized over
both backends in their own modules (`history_backend`).
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import time
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from aggregator import AggregatorServer
from aggregator._history import (
    HistorySettings,
    HistoryStoreError,
    KindSample,
    SeriesKey,
    evaluate_range,
    parse_tiers,
)
from aggregator._history.memory import OpenChunks
from aggregator._history.postgres import PostgresStore
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.store import store_opener
from tests.eventually import eventually
from tests.history_backends import TIERS, PostgresBackend
from tests.history_mesh import (
    agents,
    fake_clocks,
    history_server,
    registry_of,
    run_round,
    stored_events,
    tick,
    tracker,
    wire_snapshot,
    writer_of,
)
from tests.ports import free_port
from tests.postgres_server import PASSWORD, PostgresServer
from tests.seeds import sql_under
from tests.tcp_relay import TcpRelay

MINUTE = 60_000
SERVICES = (("orders-api", "core"), ("billing-api", "payments"), ("search-api", "core"))
KINDS = ("api_call", "data_fetch")
FIGURES = {  # the view's metric_name: the store's figure (query.py), and whose samples it reads
    "response_time": ("latency_avg_ms", True),
    "error_rate": ("error_rate", True),
    "events_per_second": ("events_per_second", True),
    "cpu_usage_percent": ("cpu_usage_percent", False),
    "availability": ("availability", False),
}


def backend_on(server: PostgresServer) -> PostgresBackend:
    return PostgresBackend(server, server.new_database())


async def fill_last_70_minutes(backend: PostgresBackend) -> tuple[dict[SeriesKey, Any], int]:
    """A real aggregator's rounds, 10 s apart, over the last 70 minutes of the real clock.

    Returns every series' 1 min samples and how far the finest tier is sealed (the view shows
    the minutes up to there).
    """
    monotonic, wall, clocks = fake_clocks(start=time.time() - 70 * 60)
    rng = random.Random(4)
    trackers = [tracker(name, monotonic, wall) for name, _ in SERVICES]
    types = [kind_type for _, kind_type in SERVICES]
    async with (
        agents(trackers) as servers,
        history_server(registry_of(servers, types), backend, clocks) as server,
    ):
        for number in range(420):
            tick(monotonic, wall, 10.0)
            for position, each in enumerate(trackers):
                if position == 2 and 300 <= number < 312:
                    continue  # two quiet minutes: it answers, without events
                for kind in KINDS:
                    for _ in range(rng.randrange(1, 6)):
                        seconds = rng.lognormvariate(math.log(0.02 * (1 + position)), 0.8)
                        each.observe(kind, seconds, error=rng.random() < 0.1)
                each.record(KINDS[0])  # an untimed event too
            await run_round(server)
        writer = writer_of(server)
        assert writer.status().degraded_reason == ""
        keys = [SeriesKey(name, kind) for name, _ in SERVICES for kind in ("", *KINDS)]
        minutes = writer.reader.read(keys, TIERS[1], -(2**62), 2**62)
        return minutes, writer.memory.sealed_ms[0]


def figures_per_minute(
    minutes: dict[SeriesKey, Any], service: str, metric: str, now_ms: int, sealed_ms: int
) -> dict[int, float]:
    """The store's figure per minute end T in [now - 1 h, sealed] for `service` (query.py)."""
    figure, of_kinds = FIGURES[metric]
    series = [  # a kind figure reads the service's own series too: idle or down (query.py)
        samples
        for key, samples in minutes.items()
        if key.service == service and (of_kinds or key.kind == "")
    ]
    first = -(-(now_ms - 3_600_000) // MINUTE) * MINUTE
    return dict(evaluate_range(series, figure, first, sealed_ms, MINUTE))


async def test_seed_004_service_health_sql_runs_unchanged_and_says_what_the_figures_say(
    postgres: PostgresServer,
) -> None:
    backend = backend_on(postgres)
    minutes, sealed_ms = await fill_last_70_minutes(backend)
    health = sql_under("004", "Get service health")
    with backend.connect() as database, database.transaction():  # one NOW() for both
        now = database.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        started = time.perf_counter()
        answer = database.execute(health).fetchall()
        elapsed = time.perf_counter() - started
        rows = database.execute(
            "SELECT service_name, metric_name, value, timestamp, tags FROM system_metrics "
            "WHERE timestamp >= NOW() - INTERVAL '1 hour'"
        ).fetchall()
    now_ms = int(now.timestamp() * 1000)
    assert elapsed < 1.0  # milliseconds in fact (bench_history_postgres measures it)
    by_service = {name: (avg, count) for name, avg, count in answer}
    assert set(by_service) == {name for name, _ in SERVICES}
    for name, _ in SERVICES:
        expected = figures_per_minute(minutes, name, "response_time", now_ms, sealed_ms)
        assert len(expected) >= 55  # an hour of minutes, less the one or two not sealed yet
        avg, count = by_service[name]
        assert count == len(expected)
        exact = statistics.fmean(expected.values())
        assert abs(float(avg) - exact) <= 0.005 + 1e-9, name  # values rounded to 2 places
    # Every row of the view is the store's figure for its service and minute, rounded.
    view: dict[tuple[str, str], dict[int, Decimal]] = {}
    for name, metric, value, stamp, tags in rows:
        assert tags == {"type": dict(SERVICES)[name]}
        view.setdefault((name, metric), {})[int(stamp.timestamp() * 1000)] = value
    for name, _ in SERVICES:
        for metric in FIGURES:
            expected = figures_per_minute(minutes, name, metric, now_ms, sealed_ms)
            found = view.get((name, metric), {})
            assert found.keys() == expected.keys(), (name, metric)
            for at, value in expected.items():
                assert abs(float(found[at]) - value) <= 0.005 + 1e-9, (name, metric, at)
    rates = view[("search-api", "events_per_second")]
    quiet = {at for at, rate in rates.items() if rate == 0}
    assert quiet  # the quiet minutes: a rate of 0, no response time (no timed event)
    assert not quiet & view[("search-api", "response_time")].keys()


async def test_rounds_go_on_while_postgresql_is_down_and_the_history_catches_up(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_on(own_postgres)
    monotonic, wall, clocks = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    api = SeriesKey("orders-api", "api_call")
    caplog.set_level(logging.INFO, logger="aggregator.history")
    async with (
        agents([orders]) as servers,
        history_server(registry_of(servers), backend, clocks, retry_buffer_rounds=100) as server,
    ):
        writer = writer_of(server)

        async def one_round() -> None:
            tick(monotonic, wall, 1.0)
            orders.record("api_call", n=2)
            assert (await run_round(server)).active_count == 1  # the rounds go on

        for _ in range(130):  # a seal (at 120 s), then the head
            await one_round()
        own_postgres.stop("immediate")  # as a crash: connections cut, no shutdown checkpoint
        for _ in range(30):
            await one_round()
        status = writer.status()
        assert status.degraded_reason.startswith(  # the first write failed, then the connects
            "cannot connect to the history store postgresql://mesh:***@127.0.0.1:"
        )
        assert "Connection refused" in status.degraded_reason
        assert (status.buffered_rounds, status.dropped_rounds) == (30, 0)
        own_postgres.start()

        async def caught_up() -> bool:
            await one_round()
            return writer.status().degraded_reason == ""

        await eventually(caught_up, timeout=30, what="the history to be written again")
        for _ in range(120):  # and sealed again after the outage
            await one_round()
        status = writer.status()
        assert (status.buffered_rounds, status.dropped_rounds) == (0, 0)
        rounds = status.rounds_written
        # Every round and every event is stored, read back through a reader whose connection
        # the restart cut (it connects again).
        assert stored_events(writer, api, TIERS[0]) == 2 * rounds
        assert stored_events(writer, api, TIERS[1]) == 2 * rounds
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("history degraded: writing the history")
    assert any("written again" in r.getMessage() for r in caplog.records)
    assert PASSWORD not in caplog.text
    # What the database holds after the aggregator stopped: the same.
    memory = OpenChunks(TIERS)
    recorder = Recorder(backend.opener(), memory, buffer_rounds=5, monotonic=monotonic)
    recorder.open()
    try:
        samples = HistoryReader(memory).read([api], TIERS[0], -(2**62), 2**62)[api]
        assert len(samples) == rounds
        assert sum(s.events for s in samples if isinstance(s, KindSample)) == 2 * rounds
    finally:
        recorder.finish()


def test_a_connection_cut_on_the_way_is_taken_over_from_the_session_the_server_still_holds(
    postgres: PostgresServer,
) -> None:
    database = postgres.new_database()
    with TcpRelay(("127.0.0.1", postgres.port)) as relay:
        url = f"postgresql://mesh:{quote(PASSWORD, safe='')}@127.0.0.1:{relay.port}/{database}"
        store = PostgresStore(url, TIERS)
        try:
            store.append_round(1000, b"one")
            relay.cut()  # the aggregator's side is reset; the server keeps the session, and
            with pytest.raises(HistoryStoreError, match="writing the history store"):
                store.append_round(2000, b"two")  # its lock, until its keepalive gives up
            store.append_round(2000, b"two")  # connects again and takes the lock over
            assert [time_ms for time_ms, _ in store.head()] == [1000, 2000]
            with pytest.raises(HistoryStoreError, match="in use by another aggregator"):
                PostgresStore(url, TIERS)  # another aggregator is still refused
        finally:
            store.close()


def test_the_minute_rows_keep_the_minute_tiers_retention(postgres: PostgresServer) -> None:
    backend = backend_on(postgres)
    tiers = parse_tiers(["1s:1h", "1m:2h", "5m:1d"])
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    recorder = Recorder(
        backend.opener(tiers), OpenChunks(tiers), buffer_rounds=5, monotonic=monotonic
    )
    recorder.open()
    for _ in range(4 * 60):  # four hours of 60 s rounds
        tick(monotonic, wall, 60.0)
        orders.record("api_call", n=3)
        recorder.record(wire_snapshot(wall(), [orders]))
    recorder.finish()
    with backend.connect() as database:
        oldest, count = database.execute(
            "SELECT min(timestamp), count(*) FROM system_metrics "
            "WHERE metric_name = 'events_per_second'"
        ).fetchone()  # type: ignore[misc]
    age = wall() - oldest.timestamp()
    assert 2 * 3600 - 60 <= age <= 2 * 3600 + 120  # the 1m:2h tier's retention (+ a batch)
    assert count >= 118


def test_a_postgresql_url_opens_the_postgresql_store_named_without_its_password(
    postgres: PostgresServer,
) -> None:
    backend = backend_on(postgres)
    store = store_opener(HistorySettings(url=backend.url))()
    try:
        assert isinstance(store, PostgresStore)
        assert store.name == backend.url.replace("mesh-s3cret%40pw", "***")
    finally:
        store.close()


def test_a_wrong_password_or_a_server_down_is_said_without_the_password(
    postgres: PostgresServer,
) -> None:
    database = postgres.new_database()
    wrong = postgres.url(database, password="not-the-s3cret:pw")
    with pytest.raises(HistoryStoreError) as refused:
        PostgresStore(wrong, TIERS)
    assert "password authentication failed" in str(refused.value)
    assert "not-the-s3cret" not in str(refused.value) and "***" in str(refused.value)
    down = f"postgresql://mesh:{PASSWORD}x@127.0.0.1:{free_port()}/{database}"
    with pytest.raises(HistoryStoreError, match="cannot connect") as caught:
        PostgresStore(down, TIERS)
    assert PASSWORD not in str(caught.value)


async def test_an_aggregator_whose_postgresql_is_unreachable_serves_rounds_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://mesh:{PASSWORD.replace('@', '%40')}@127.0.0.1:{free_port()}/metrics"
    monotonic, wall, clocks = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    caplog.set_level(logging.INFO, logger="aggregator.history")
    async with agents([orders]) as servers:
        server = AggregatorServer(
            registry_of(servers),
            clocks=clocks,
            interval_rounds=False,
            history=HistorySettings(url=url),
        )
        async with server:
            for _ in range(3):
                tick(monotonic, wall, 1.0)
                assert (await run_round(server)).active_count == 1
            status = writer_of(server).status()
    assert status.degraded_reason.startswith(
        "cannot connect to the history store postgresql://mesh:***@127.0.0.1:"
    )
    assert status.buffered_rounds == 3
    assert "history degraded: cannot connect" in caplog.text
    for secret in (PASSWORD, "mesh-s3cret"):
        assert secret not in caplog.text and secret not in status.degraded_reason
