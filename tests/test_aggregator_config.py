"""The mesh TOML file as the aggregator reads it: defaults, overrides and every bad case."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator import DEFAULT_REGISTRY, SECTION, AggregatorSettings, ConfigError, load_config

GOOD = """
[aggregator]
port = 50200
interval_seconds = 2
deadline_seconds = 0.25
history_seconds = 60

[gateway]
port = 8000

[[services]]
name = "weather-api"
port = 8009
type = "data"
data_source = "weather"

[[services]]
name = "admin-api"
host = "10.0.0.5"
port = 8003
agent_port = 9003
type = "core"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_file_the_registry_is_the_built_in_fifteen() -> None:
    config = load_config(None, environ={})
    assert config.services is DEFAULT_REGISTRY
    assert len(config.services) == 15
    assert config.services.by_name("websocket-ingestion").agent_port == 18001
    assert config.services.by_name("data-retention").agent_port == 18080
    weather = config.services.by_name("weather-api")
    assert (weather.port, weather.type, weather.data_source) == (8009, "data", "weather")
    assert config.aggregator.interval_seconds == 1.0
    assert config.aggregator.deadline_seconds == 0.5
    assert config.aggregator.history_size == 900


def test_a_good_file_is_read_with_defaults_filled_in(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), environ={})
    assert config.services.names == ("weather-api", "admin-api")
    weather, admin = config.services
    assert (weather.host, weather.agent_port) == ("127.0.0.1", 18009)
    assert admin.target == "10.0.0.5:9003"
    assert config.aggregator.port == 50200
    assert config.aggregator.history_size == 30
    # The [gateway] table is another component's: accepted, and not the aggregator's business.
    assert config.aggregator == AggregatorSettings(
        port=50200, interval_seconds=2.0, deadline_seconds=0.25, history_seconds=60.0
    )


def test_environment_overrides_the_aggregator_section(tmp_path: Path) -> None:
    environ = {
        "METRICS_MESH_AGGREGATOR_PORT": "50300",
        "METRICS_MESH_AGGREGATOR_DEADLINE_SECONDS": "0.1",
        "METRICS_MESH_GATEWAY_PORT": "1",  # another section's: not ours to read
    }
    config = load_config(write(tmp_path, GOOD), environ=environ)
    assert config.aggregator.port == 50300
    assert config.aggregator.deadline_seconds == 0.1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[aggregator]\ncolour = "red"\n', "[aggregator] unknown key 'colour'"),
        ("[metrics]\nx = 1\n", "unknown top-level table 'metrics'"),
        (
            "[aggregator]\ninterval_seconds = 1.0\ndeadline_seconds = 1.0\n",
            "deadline_seconds: 1.0 must be shorter than interval_seconds (1.0)",
        ),
        ("[aggregator]\nport = 70000\n", "[aggregator] port: 70000 is not in 0..65535"),
        ('[aggregator]\nport = "x"\n', "[aggregator] port: must be an integer, got 'x'"),
        ("[aggregator]\nport = 1.5\n", "[aggregator] port: must be an integer, got 1.5"),
        ("[aggregator]\nmax_subscribers = true\n", "max_subscribers: must be an integer, got True"),
        ('[aggregator]\ninterval_seconds = "1"\n', "interval_seconds: must be a number, got '1'"),
        ('[aggregator]\nhost = ""\n', "[aggregator] host: must not be empty"),
        ("[aggregator]\nhistory_seconds = 0.5\n", "history_seconds: 0.5 must be at least"),
        ("aggregator = 3\n", "[aggregator] must be a table, got 3"),
        ("services = 3\n", "services must be an array of tables"),
        (
            '[[services]]\nname = "a"\nport = "8001"\ntype = "core"\n',
            "services[0] ('a'): port must be an integer, got '8001'",
        ),
        (
            '[[services]]\nname = "a"\nport = 8001\ntype = "core"\n'
            '[[services]]\nname = "a"\nport = 8002\ntype = "core"\n',
            "services[1] ('a'): duplicate name, already used by services[0]",
        ),
        (
            '[[services]]\nname = "a"\nport = 8001\ntype = "core"\n'
            '[[services]]\nname = "weather-api"\nport = 70000\ntype = "data"\n',
            "services[1] ('weather-api'): port 70000 is not in 1..65535",
        ),
        (
            '[[services]]\nname = "a"\nport = 8001\ntype = "core"\ncolour = 1\n',
            "services[0] ('a'): unknown key 'colour'",
        ),
        ('[[services]]\nname = "a"\ntype = "core"\n', "services[0] ('a'): port is missing"),
        (
            '[[services]]\nname = "a"\nport = 60000\ntype = "core"\n',
            "services[0] ('a'): agent_port defaults to port + 10000 = 70000",
        ),
        (
            '[[services]]\nname = "a"\nport = 8001\ntype = ""\n',
            "services[0] ('a'): type must be one non-empty word",
        ),
        ('[[services]]\nport = 8001\ntype = "core"\n', "services[0]: name must be a non-empty"),
        (
            '[[services]]\nname = "a"\nport = 8001\ntype = "core"\n'
            '[[services]]\nname = "b"\nport = 8002\nagent_port = 18001\ntype = "core"\n',
            "services[1] ('b'): agent address 127.0.0.1:18001 is already used by services[0]",
        ),
        ("[aggregator\n", "not valid TOML"),
    ],
)
def test_a_bad_file_stops_start_up_naming_the_entry(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"METRICS_MESH_AGGREGATOR_PORTT": "1"}, "METRICS_MESH_AGGREGATOR_PORTT: unknown"),
        (
            {"METRICS_MESH_AGGREGATOR_PORT": "abc"},
            "environment METRICS_MESH_AGGREGATOR_PORT: 'abc' is not an integer",
        ),
        (
            {"METRICS_MESH_AGGREGATOR_INTERVAL_SECONDS": "soon"},
            "METRICS_MESH_AGGREGATOR_INTERVAL_SECONDS: 'soon' is not a number",
        ),
        ({"METRICS_MESH_AGGREGATOR_DEADLINE_SECONDS": "5"}, "must be shorter than"),
    ],
)
def test_a_bad_environment_override_is_named(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ=environ)
    assert expected in str(caught.value)


def test_a_table_error_keeps_its_cause_when_the_file_name_is_added(tmp_path: Path) -> None:
    path = write(tmp_path, "[aggregator]\ninterval_seconds = 1.0\ndeadline_seconds = 2.0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    table_error = caught.value.__cause__
    assert isinstance(table_error, ConfigError)
    assert str(caught.value) == f"{path}: {table_error}"
    key_error = table_error.__cause__  # what the settings themselves refused
    assert isinstance(key_error, ConfigError)
    assert str(key_error).startswith("deadline_seconds: 2.0 must be shorter")


def test_the_help_text_lists_every_key_with_its_environment_variable() -> None:
    text = SECTION.help_text()
    declared = SECTION.keys()
    assert text.startswith("[aggregator]") and "METRICS_MESH_AGGREGATOR_<KEY>" in text
    for key in declared:
        assert f"  {key.name}: " in text
        assert key.env_var == f"METRICS_MESH_AGGREGATOR_{key.name.upper()}"
    assert [key.name for key in declared] == [
        "host",
        "port",
        "interval_seconds",
        "deadline_seconds",
        "history_seconds",
        "max_subscribers",
        "backoff_max_seconds",
        "min_round_spacing_seconds",
        "trusted_peers",
        "trusted_clients",
        "reserved_subscribers",
        "max_streams_per_peer",
        "max_connections",
        "connection_idle_seconds",
        "keepalive_seconds",
        "max_streams_per_connection",
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_connections", "0"),
        ("max_streams_per_connection", "0"),
        ("connection_idle_seconds", "0"),
        ("keepalive_seconds", "-1"),
        ("connection_idle_seconds", "inf"),
        ("max_streams_per_connection", "999"),  # below max_subscribers (1000)
    ],
)
def test_connection_limits_must_be_positive(tmp_path: Path, key: str, value: str) -> None:
    path = write(tmp_path, f"[aggregator]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert f"{key}: " in str(caught.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "absent.toml", environ={})
