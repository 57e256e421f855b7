"""The demo's plan: ports, the generated config, misbehaviour, profiles and schedules."""

from __future__ import annotations

import dataclasses
import random
import tomllib
from pathlib import Path

import pytest

from aggregator import DEFAULT_REGISTRY, load_config
from demo_fleet.banner import banner
from demo_fleet.plan import FleetPlan, misbehaviour, plan_fleet
from demo_fleet.ports import (
    LOWEST_PICKED_PORT,
    _ephemeral_range,
    free_ports,
    port_is_free,
)
from demo_fleet.profiles import BUILT_IN, flows_for, kinds_of
from demo_fleet.schedule import Schedule
from demo_fleet.settings import SECTION as DEMO
from demo_fleet.settings import DemoSettings
from demo_fleet.toml_out import dumps
from gateway import GatewaySettings, load_settings
from mesh_common.config import load_mesh_file
from mesh_common.errors import ConfigError
from mesh_common.registry import SERVICES


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
    # 15 services, log-aggregator twice (2 replicas), upstream, aggregator, OTLP, gateway
    assert len(ports) == 2 * 16 + 4 == len(set(ports))


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


# --- replicas: one process per instance ----------------------------------------------------


def instance_ports(plan: FleetPlan, service: str) -> list[tuple[str, int, int]]:
    """(process name, HTTP port, agent port) of every instance of `service`."""
    return [
        (each.name, each.port, each.agent_port)
        for each in plan.instances
        if each.entry.name == service
    ]


@pytest.mark.parametrize("use_free_ports", [False, True])
def test_the_replicated_service_runs_two_instances_listed_in_the_generated_config(
    tmp_path: Path, use_free_ports: bool
) -> None:
    plan = default_plan(use_free_ports=use_free_ports)
    (first, second) = instance_ports(plan, "log-aggregator")
    assert (first[0], second[0]) == ("log-aggregator#1", "log-aggregator#2")
    if not use_free_ports:
        assert (first[1:], second[1:]) == ((8015, 18015), (9015, 19015))
    path = tmp_path / "mesh.toml"
    path.write_text(dumps(plan.config_document()), encoding="utf-8")
    config = load_config(path, environ={})
    registry = config.services
    (instance_down,) = [rule for rule in config.alerts.rules if rule.name == "InstanceDown"]
    assert instance_down.service_names == {"log-aggregator"}  # a killed replica alerts
    assert (instance_down.figure, instance_down.threshold) == ("instances_up", 2)
    assert registry.by_name("log-aggregator").addresses == (
        f"127.0.0.1:{first[2]}",
        f"127.0.0.1:{second[2]}",
    )
    assert registry.by_name("log-aggregator").port == first[1]  # the first's, shown to users
    assert registry == plan.services and len(registry) == 15
    specs = {spec.name: spec for spec in plan.service_specs(path)}
    for name, port, agent_port in (first, second):
        assert specs[name].summary == f"http 127.0.0.1:{port}  agent 127.0.0.1:{agent_port}"
        argv = specs[name].argv
        assert argv[argv.index("--load-scale") + 1] == "0.5"  # each does half the service's load
    assert "log-aggregator" not in specs  # no third process under the service's own name


def test_the_default_registry_stays_one_agent_per_service() -> None:
    assert DEFAULT_REGISTRY.by_name("log-aggregator").addresses == ("127.0.0.1:18015",)
    plan = default_plan()
    assert plan.services.by_name("weather-api") == DEFAULT_REGISTRY.by_name("weather-api")


def test_the_port_offset_moves_every_instance() -> None:
    plan = default_plan(port_offset=100)
    assert instance_ports(plan, "log-aggregator") == [
        ("log-aggregator#1", 8115, 18115),
        ("log-aggregator#2", 9115, 19115),
    ]


def test_the_last_replica_is_killed_now_and_then_unless_nobody_misbehaves(tmp_path: Path) -> None:
    demo = DemoSettings(replica_up_seconds=7, replica_down_seconds=3)
    plan = plan_fleet(load_mesh_file(None, environ={}), GatewaySettings(), demo)
    chaos = misbehaviour(plan.demo, plan.services)
    assert chaos.killed == "log-aggregator#2"
    assert any(
        note.startswith("log-aggregator#2 is killed (SIGKILL") and "1/2 instances" in note
        for note in chaos.notes
    )
    specs = {spec.name: spec for spec in plan.service_specs(tmp_path / "mesh.toml")}
    assert (specs["log-aggregator#2"].kill_after, specs["log-aggregator#2"].restart_delay) == (7, 3)
    assert specs["log-aggregator#1"].kill_after is None
    calm = dataclasses.replace(plan, demo=dataclasses.replace(demo, misbehave=False))
    assert misbehaviour(calm.demo, calm.services).killed == ""
    assert all(spec.kill_after is None for spec in calm.service_specs(tmp_path / "mesh.toml"))
    assert misbehaviour(demo, DEFAULT_REGISTRY).killed == ""  # one instance: none to kill


def test_one_replica_is_the_service_s_own_process() -> None:
    mesh = load_mesh_file(None, environ={"METRICS_MESH_DEMO_REPLICAS": "1"})
    plan = plan_fleet(mesh, GatewaySettings(), mesh.read(DEMO))
    assert instance_ports(plan, "log-aggregator") == [("log-aggregator", 8015, 18015)]
    assert plan.services == DEFAULT_REGISTRY
    assert misbehaviour(plan.demo, plan.services).killed == ""


def test_a_service_the_file_gives_instances_runs_one_process_per_address(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(
        '[demo]\nreplicated_service = ""\n'
        '[[services]]\nname = "orders"\nport = 7000\ntype = "core"\n'
        'instances = ["127.0.0.1:17000", "127.0.0.1:17001", "127.0.0.1:17002"]\n',
        encoding="utf-8",
    )
    mesh = load_mesh_file(path, environ={})
    plan = plan_fleet(mesh, GatewaySettings(), mesh.read(DEMO))
    assert instance_ports(plan, "orders") == [
        ("orders#1", 7000, 17000),
        ("orders#2", 8000, 17001),
        ("orders#3", 9000, 17002),
    ]
    assert plan.services == mesh.read(SERVICES)
    assert misbehaviour(plan.demo, plan.services).killed == ""  # not the replicated service


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("[demo]\nreplicas = 0\n", "replicas: 0 is not in 1..10"),
        ("[demo]\nreplicas = 11\n", "replicas: 11 is not in 1..10"),
        (
            '[[services]]\nname = "log-aggregator"\nport = 64800\nagent_port = 30000\n'
            'type = "core"\n',
            "log-aggregator#2's port would be 64800 + 1 x 1000 = 65800, outside 1..65535",
        ),
        (
            '[[services]]\nname = "log-aggregator"\nport = 7000\ntype = "core"\n'
            '[[services]]\nname = "log-aggregator#2"\nport = 7001\ntype = "core"\n',
            "two demo processes would be called 'log-aggregator#2'",
        ),
        (
            '[[services]]\nname = "log-aggregator"\nport = 7000\ntype = "core"\n'
            '[[services]]\nname = "other"\nport = 7001\nagent_port = 18000\ntype = "core"\n',
            "agent address 127.0.0.1:18000 is already used",
        ),
    ],
)
def test_replicas_that_cannot_run_are_refused(tmp_path: Path, text: str, refusal: str) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        mesh = load_mesh_file(path, environ={})
        plan_fleet(mesh, GatewaySettings(), mesh.read(DEMO))
    assert refusal in str(error.value)


def test_the_banner_lists_every_instance_with_its_ports(tmp_path: Path) -> None:
    plan = default_plan()
    text = banner(plan, tmp_path / "mesh.toml", tmp_path)
    assert "15 services (16 processes)" in text
    assert "log-aggregator runs 2 processes, one row of k/2 up" in text
    processes = [line.split() for line in text.splitlines() if " http " in line]
    (first,) = (" ".join(words) for words in processes if words[0] == "log-aggregator#1")
    (second,) = (" ".join(words) for words in processes if words[0] == "log-aggregator#2")
    assert first.endswith("http 127.0.0.1:8015 agent 127.0.0.1:18015")
    assert second.endswith("http 127.0.0.1:9015 agent 127.0.0.1:19015 (killed now and then)")
    nobody = dataclasses.replace(plan, demo=DemoSettings(replicated_service="nope"))
    assert "replicated_service = 'nope' is not in the registry" in banner(
        nobody, tmp_path / "mesh.toml", tmp_path
    )


def test_no_instance_rule_for_a_replicated_service_the_registry_lacks(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text('[[services]]\nname = "admin-api"\nport = 8003\ntype = "core"\n')
    mesh = load_mesh_file(path, environ={})
    plan = plan_fleet(mesh, GatewaySettings(), mesh.read(DEMO))
    generated = tmp_path / "generated.toml"
    generated.write_text(dumps(plan.config_document()), encoding="utf-8")
    rules = load_config(generated, environ={}).alerts.rules  # refused a rule naming it before
    assert "InstanceDown" not in {rule.name for rule in rules}
