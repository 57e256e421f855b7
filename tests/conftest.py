"""The shared fixtures: a fake clock, the gateway's mesh, the hardened gateway, the agents, an
alerting aggregator, a PostgreSQL server and the history's backends; and the session's own state
directory.

Each is defined here once, under its own name; what they build on lives in helper modules
(gateway_mesh.py, aggregator_fleet.py, alerting_aggregator.py, postgres_server.py,
history_backends.py). A test module asks for options
with a marker (`@pytest.mark.mesh(...)`) rather than redefining a fixture, and imports helper
modules, never another test module.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aggregator_fleet import Fleet, fleet
from tests.alerting_aggregator import AlertingAggregator
from tests.browser import open_page
from tests.clocks import FakeClock
from tests.gateway_mesh import ADMIN_TOKEN, Mesh, MeshOptions, running_mesh
from tests.hardened_gateway import HARDENED_SETTINGS, SmallMesh, serving_small_mesh
from tests.history_backends import HistoryBackend, PostgresBackend, SqliteBackend
from tests.postgres_server import PostgresServer, Unavailable


def pytest_configure(config: pytest.Config) -> None:
    """Keep every aggregator's state (alert store, history) out of the user's home, and off
    the fixed OTLP port.

    A test that starts `python -m aggregator` without a state directory writes to the default
    one, `$XDG_STATE_HOME/metrics-mesh`: pointed at a directory of this session, and inherited
    by every child process. Such an aggregator also opens its OTLP port, 4317 by default: two
    at once (or a demo, a local OpenTelemetry collector) would collide, so the session's
    children take a free one (`[ingest] otlp_port = 0`) unless a test says otherwise.
    """
    state = Path(tempfile.mkdtemp(prefix="metrics-mesh-tests-state-"))
    os.environ["XDG_STATE_HOME"] = str(state)
    os.environ.setdefault("METRICS_MESH_INGEST_OTLP_PORT", "0")
    config.add_cleanup(lambda: shutil.rmtree(state, ignore_errors=True))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Mesh]:
    """15 real agents, an aggregator and the gateway on ephemeral ports, ready as asked.

    The closest `@pytest.mark.mesh(...)` (the test's, else the module's `pytestmark`) sets the
    options (`tests.gateway_mesh.MeshOptions`): `wait` ("snapshot", the default: the first 200
    body; "all_active"; "nothing"), `alert_rules` (`[[alerts.rules]]` tables: alerts run with
    their state in `tmp_path` and ADMIN_TOKEN), `aggregator_first=False` (the gateway starts
    alone and answers 503), `instances` (service name -> its number of agents) and any
    `GatewaySettings` field, e.g. `history_size=8`.
    """
    marker = request.node.get_closest_marker("mesh")
    options = MeshOptions.of(**(marker.kwargs if marker else {}))
    async with running_mesh(
        alerts=options.alerts(tmp_path),
        aggregator_first=options.aggregator_first,
        instances=options.instances,
        **options.gateway,
    ) as running:
        await options.ready(running)
        yield running


@pytest.fixture
async def hardened(request: pytest.FixtureRequest) -> AsyncIterator[SmallMesh]:
    """Three agents, an aggregator and the gateway under its guarded protocol, serving.

    Small limits (`tests.hardened_gateway.HARDENED_SETTINGS`) so that tests reach them; the
    closest `@pytest.mark.hardened(...)` changes any of them.
    """
    marker = request.node.get_closest_marker("hardened")
    settings = {**HARDENED_SETTINGS, **(marker.kwargs if marker else {})}
    async with serving_small_mesh(**settings) as running:
        yield running


@pytest.fixture
async def page(mesh: Mesh) -> AsyncIterator[Any]:
    """A Chromium page showing the `mesh` gateway's dashboard."""
    async with open_page(mesh.url + "/") as page:
        yield page


@pytest.fixture
async def agents() -> AsyncIterator[Fleet]:
    """Real, healthy agents for every service of the built-in registry (no aggregator)."""
    async with fleet(broken=False) as running:
        yield running


@pytest.fixture
async def alerting(tmp_path: Path) -> AsyncIterator[AlertingAggregator]:
    """One agent and an aggregator running alerts (ADMIN_TOKEN, state in tmp_path/state)."""
    running = AlertingAggregator(tmp_path / "state", admin_token=ADMIN_TOKEN)
    await running.start_agent()
    await running.start_aggregator()
    yield running
    await running.stop_aggregator()
    await running.stop_agent()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests/postgres_server.py); a test that
    needs it is skipped, with the reason, when it cannot be started here."""
    try:
        server = PostgresServer.start_new()
    except Unavailable as reason:
        pytest.skip(f"no PostgreSQL server: {reason}")
    yield server
    server.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, to stop and start (skipped like `postgres`)."""
    try:
        server = PostgresServer.start_new()
    except Unavailable as reason:
        pytest.skip(f"no PostgreSQL server: {reason}")
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def history_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryBackend]:
    """Each history backend in turn: a SQLite file in tmp_path, a new PostgreSQL database."""
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "history.sqlite3")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    database = server.new_database()
    yield PostgresBackend(server, database)
    server.drop_database(database)
