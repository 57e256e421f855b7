"""The demo's plan: ports, the generated config, misbehaviour, profiles and schedules."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path

import pytest

from aggregator import DEFAULT_REGISTRY, load_config
from demo_fleet.plan import FleetPlan, misbehaviour, plan_fleet
from demo_fleet.ports import (
    LOWEST_PICKED_PORT,
    _ephemeral_range,
    free_ports,
    port_is_free,
)
from demo_fleet.profiles import BUILT_IN, flows_for, kinds_of
from demo_fleet.schedule import Schedule
from demo_fleet.settings import DemoSettings
from demo_fleet.toml_out import dumps
from gateway import GatewaySettings, load_settings
from mesh_common.config import load_mesh_file
from mesh_common.errors import ConfigError


def default_plan(*, port_offset: int = 0, use_free_ports: bool = False) -> FleetPlan:
    """The plan of the built-in mesh (no file, no environment)."""
    return plan_fleet(
        load_mesh_file(None, environ={}),
        GatewaySettings(),
        DemoSettings(),
        port_offset=port_offset,
        use_free_ports=use_free_ports,
    )


def test_port_offset_moves_every_port() -> None:
    plan = default_plan(port_offset=100)
    assert [entry.port for entry in plan.services][:2] == [8101, 8102]
    assert plan.services.by_name("weather-api").agent_port == 18109
    assert (plan.aggregator.port, plan.gateway.port, plan.upstream_port) == (50200, 8100, 8199)
    assert plan.gateway.aggregator == "127.0.0.1:50200"


def test_free_ports_are_all_distinct() -> None:
    plan = default_plan(use_free_ports=True)
    ports = [claim.port for claim in plan.claims()]
    assert (
        len(ports) == 2 * 15 + 4 == len(set(ports))
    )  # services, upstream, aggregator, OTLP, gateway


def test_the_generated_config_is_what_the_aggregator_and_gateway_read(tmp_path: Path) -> None:
    plan = default_plan(use_free_ports=True)
    path = tmp_path / "mesh.toml"
    path.write_text(dumps(plan.config_document()), encoding="utf-8")
    config = load_config(path, environ={})
    assert config.services == plan.services
    assert [entry.name for entry in config.services] == list(DEFAULT_REGISTRY.names)
    assert config.aggregator.port == plan.aggregator.port
    assert config.ingest.otlp_port == plan.otlp_port != -1
    gateway = load_settings(path, environ={})
    assert (gateway.port, gateway.aggregator) == (plan.gateway.port, plan.aggregator_address)


def test_toml_output_reads_back_the_same() -> None:
    document = {
        "gateway": {"cors_origins": ["http://a", 'quote"d'], "port": 1, "access_log": True},
        "services": [{"name": "ü-service", "port": 2}, {"name": "b", "port": 3}],
        "demo": {"load_scale": 0.1},
    }
    assert tomllib.loads(dumps(document)) == document


def test_an_offset_beyond_the_port_range_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        default_plan(port_offset=60000)
    assert "--port-offset 60000" in str(error.value)


def test_a_server_on_port_0_is_refused_without_free_ports() -> None:
    mesh = load_mesh_file(None, environ={"METRICS_MESH_AGGREGATOR_PORT": "0"})
    with pytest.raises(ConfigError) as error:
        plan_fleet(mesh, GatewaySettings(), DemoSettings())
    assert "--free-ports" in str(error.value)
    assert plan_fleet(mesh, GatewaySettings(), DemoSettings(), use_free_ports=True)


def test_the_user_s_tables_are_handed_to_the_children(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[aggregator]\ninterval_seconds = 2.0\n[gateway]\nhistory_size = 7\n")
    plan = plan_fleet(load_mesh_file(path, environ={}), GatewaySettings(), DemoSettings())
    generated = tmp_path / "generated.toml"
    generated.write_text(dumps(plan.config_document()), encoding="utf-8")
    assert load_config(generated, environ={}).aggregator.interval_seconds == 2.0
    assert load_settings(generated, environ={}).history_size == 7


def test_a_misbehaving_role_naming_no_service_says_so() -> None:
    chosen = misbehaviour(DemoSettings(restarting_service="nope"), DEFAULT_REGISTRY)
    assert chosen.restarting == ""
    assert chosen.not_serving == "calendar-service" and chosen.error == "energy-correlator"
    assert any("'nope' is not in the registry" in note for note in chosen.notes)
    calm = misbehaviour(DemoSettings(misbehave=False), DEFAULT_REGISTRY)
    assert (calm.restarting, calm.not_serving, calm.error) == ("", "", "")


def test_every_built_in_service_has_its_own_profile_with_several_kinds() -> None:
    assert set(BUILT_IN) == set(DEFAULT_REGISTRY.names)
    for entry in DEFAULT_REGISTRY:
        flows = flows_for(entry.name, entry.type, has_data_source=bool(entry.data_source))
        assert flows
        if entry.data_source:
            assert "data_fetch" in kinds_of(flows)
    rates = {sum(f.rate for f in BUILT_IN[name]) for name in BUILT_IN}
    assert len(rates) >= 10  # different rates, not one profile copied


def test_the_workloads_give_every_colour_of_errors_and_latency() -> None:
    rng = random.Random(1)

    def shape(name: str, kind: str, elapsed: float) -> tuple[float, float]:
        (flow,) = [f for f in BUILT_IN[name] if f.kind == kind]
        samples = [flow.timing.sample(rng, elapsed) for _ in range(20_000)]
        durations = sorted(seconds for seconds, _ in samples)
        return sum(failed for _, failed in samples) / len(samples), durations[19_800]

    errors, _ = shape("enrichment-pipeline", "message", 100.0)
    assert 0.02 <= errors <= 0.05  # one service runs at 2-5 % errors ...
    spell_errors, _ = shape("enrichment-pipeline", "message", 10.0)
    assert spell_errors > 0.08  # ... and at times high enough for HighErrorRate to fire
    _, calm_p99 = shape("ai-automation-service", "inference", 60.0)
    _, spell_p99 = shape("ai-automation-service", "inference", 10.0)
    assert calm_p99 < 1.0 < 2.0 < spell_p99  # and one has a slow p99 at times
    fast_errors, fast_p99 = shape("websocket-ingestion", "message", 0.0)
    assert fast_errors < 0.01 and fast_p99 < 0.01


def test_unknown_services_get_a_profile_from_their_type_without_fetching() -> None:
    flows = flows_for("billing", "data", has_data_source=False)
    assert all(flow.via != "upstream" for flow in flows)
    assert flows_for("billing", "data", has_data_source=False) == flows  # deterministic


@pytest.mark.parametrize(
    ("elapsed", "active"),
    [(0, False), (9.9, False), (10, True), (12.9, True), (13, False), (30, True)],
)
def test_schedule_windows(elapsed: float, active: bool) -> None:
    assert Schedule(10, 20, 3).active(elapsed) is active


@pytest.mark.parametrize("text", ["1,2", "a,b,c", "0,5,5", "0,0,1"])
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Schedule.parse(text)


def test_free_ports_avoid_the_kernel_s_ephemeral_range() -> None:
    low, _ = _ephemeral_range()
    if low <= LOWEST_PICKED_PORT + 100:
        pytest.skip(f"no room below the ephemeral range (it starts at {low})")
    ports = free_ports(40)
    assert all(LOWEST_PICKED_PORT <= port < low for port in ports)
    assert all(port_is_free("127.0.0.1", port)[0] for port in ports)


@pytest.mark.parametrize(
    ("host", "dialled"),
    [("0.0.0.0", "127.0.0.1:50100"), ("::", "[::1]:50100"), ("::1", "[::1]:50100")],
)
def test_the_children_dial_the_aggregator_where_it_listens(host: str, dialled: str) -> None:
    mesh = load_mesh_file(None, environ={"METRICS_MESH_AGGREGATOR_HOST": host})
    plan = plan_fleet(mesh, GatewaySettings(), DemoSettings())
    assert plan.aggregator_address == dialled == plan.gateway.aggregator
    assert plan.config_document()["gateway"]["aggregator"] == dialled


def test_the_demo_keeps_its_history_in_the_state_directory_unless_the_file_says(
    tmp_path: Path,
) -> None:
    kept = tmp_path / "state" / "demo-history.sqlite3"
    path = tmp_path / "mesh.toml"
    path.write_text(dumps(default_plan().config_document(history=kept)), encoding="utf-8")
    assert load_config(path, environ={}).history.database_path() == kept
    own = tmp_path / "own.toml"
    own.write_text("[history]\nenabled = false\n", encoding="utf-8")
    plan = plan_fleet(load_mesh_file(own, environ={}), GatewaySettings(), DemoSettings())
    assert plan.config_document(history=kept)["history"] == {"enabled": False}
