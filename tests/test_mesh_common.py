"""The neutral package every component stands on: addresses, the config loader, wire times,
the error tree and its exit statuses, passwords masked, and the import floor the gateway
relies on."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from metricsmesh.v1 import snapshot_pb2

import agent
import aggregator
from gateway._limits import host_name
from mesh_common.addresses import HostPort, format_host_port, loopback_for, split_host_port
from mesh_common.config import (
    BUILT_IN,
    MeshFile,
    Section,
    known_tables,
    load_mesh_file,
    setting,
)
from mesh_common.errors import (
    EXIT_FAILURE,
    EXIT_PORT_IN_USE,
    EXIT_USAGE,
    AddressError,
    ConfigError,
    MeshError,
    PortInUseError,
    ServerStateError,
    exit_status,
)
from mesh_common.filters import ServiceFilter
from mesh_common.grpc_input import peer_host
from mesh_common.redact import redact
from mesh_common.registry import SERVICES
from mesh_common.wire_time import duration, iso_utc, set_seconds, timestamp, to_seconds

# --- HOST:PORT ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:50100", "127.0.0.1", 50100),
        ("localhost:1", "localhost", 1),
        ("[::1]:50100", "::1", 50100),
        ("[fe80::1%eth0]:8000", "fe80::1%eth0", 8000),
        ("  agents.example:65535 ", "agents.example", 65535),
    ],
)
def test_host_port_parses_and_formats_back(text: str, host: str, port: int) -> None:
    parsed = HostPort.parse(text)
    assert (parsed.host, parsed.port) == (host, port)
    assert str(parsed) == text.strip()
    assert HostPort.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("gateway.example", ("gateway.example", None)),
        ("gateway.example:8000", ("gateway.example", "8000")),
        ("[::1]", ("::1", None)),
        ("[::1]:8000", ("::1", "8000")),
        ("::1", ("::1", None)),  # a bare IPv6 address is all host
        ("[::1", ("[::1", None)),  # unclosed: nothing is guessed
    ],
)
def test_one_splitter_for_host_headers_peers_and_addresses(
    text: str, split: tuple[str, str | None]
) -> None:
    assert split_host_port(text) == split
    assert host_name(text.upper()) == split[0].lower()  # the gateway's Host check
    assert peer_host(f"ipv4:{text}" if text.count(":") < 2 else f"ipv6:{text}") == split[0]


def test_an_ipv6_host_is_written_in_brackets() -> None:
    assert str(HostPort("::1", 50100)) == "[::1]:50100"
    assert format_host_port("::", 0) == "[::]:0"
    assert format_host_port("10.0.0.5", 9003) == "10.0.0.5:9003"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost", "'localhost' has no port; write HOST:PORT"),
        ("127.0.0.1:99999", "port 99999 is not in 1..65535"),
        ("127.0.0.1:0", "port 0 is not in 1..65535"),
        ("127.0.0.1:http", "the port must be a number"),
        ("127.0.0.1:", "the port must be a number"),
        ("127.0.0.1:123456", "the port must be a number"),
        (":50100", "has no host"),
        ("::1:50100", "put an IPv6 host in brackets"),
        ("[::1]", "is not [IPV6]:PORT"),
        ("[::1:50100", "is not [IPV6]:PORT"),
    ],
)
def test_a_bad_host_port_is_an_address_error_naming_what_it_is(text: str, expected: str) -> None:
    with pytest.raises(AddressError) as caught:
        HostPort.parse(text, what="--aggregator")
    message = str(caught.value)
    assert message.startswith(f"--aggregator: {text.strip()!r}")
    assert expected in message
    assert isinstance(caught.value, ConfigError)  # a usage error: exit status 2


def test_port_zero_is_allowed_only_when_asked_for() -> None:
    assert HostPort.parse("0.0.0.0:0", allow_port_zero=True) == HostPort("0.0.0.0", 0)


@pytest.mark.parametrize(
    ("bind", "dial"),
    [
        ("0.0.0.0:8000", "127.0.0.1:8000"),
        ("[::]:8000", "[::1]:8000"),
        ("127.0.0.1:8000", "127.0.0.1:8000"),
        ("10.1.2.3:8000", "10.1.2.3:8000"),
    ],
)
def test_a_wildcard_bind_address_is_dialled_on_loopback(bind: str, dial: str) -> None:
    assert str(HostPort.parse(bind).dialable()) == dial


def test_loopback_for_a_bare_wildcard_host() -> None:
    assert (loopback_for(""), loopback_for("0.0.0.0"), loopback_for("::")) == (
        "127.0.0.1",
        "127.0.0.1",
        "::1",
    )
    assert loopback_for("example.org") == "example.org"


# --- the config loader ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """A table of every key type the loader knows."""

    name: str = setting("probe", "a string")
    count: int = setting(1, "an integer")
    ratio: float = setting(0.5, "a number")
    enabled: bool = setting(False, "true or false")
    tags: tuple[str, ...] = setting((), "a list of strings")

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ConfigError(f"count: {self.count} must be >= 0")


PROBE = Section("probe", ProbeSettings, "a table for the tests")


def mesh(tables: dict[str, object], environ: dict[str, str] | None = None) -> MeshFile:
    return MeshFile("mesh.toml", tables, environ or {})


def test_a_table_is_read_into_its_dataclass_with_defaults_filled_in() -> None:
    settings = mesh({"probe": {"count": 3, "ratio": 2, "tags": ["a", "b"]}}).read(PROBE)
    assert settings == ProbeSettings(count=3, ratio=2.0, tags=("a", "b"))
    assert isinstance(settings.ratio, float)
    assert mesh({}).read(PROBE) == ProbeSettings()  # an absent table: every default


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"colour": "red"}, "mesh.toml: [probe] unknown key 'colour'; allowed: count, enabled,"),
        ({"count": "3"}, "mesh.toml: [probe] count: must be an integer, got '3'"),
        ({"count": 1.5}, "mesh.toml: [probe] count: must be an integer, got 1.5"),
        ({"count": True}, "mesh.toml: [probe] count: must be an integer, got True"),
        ({"ratio": "x"}, "mesh.toml: [probe] ratio: must be a number, got 'x'"),
        ({"enabled": 1}, "mesh.toml: [probe] enabled: must be true or false, got 1"),
        ({"name": 5}, "mesh.toml: [probe] name: must be a string, got 5"),
        ({"tags": ["a", 1]}, "mesh.toml: [probe] tags: must be a list of strings"),
        ({"count": -1}, "mesh.toml: [probe] count: -1 must be >= 0"),
    ],
)
def test_a_bad_key_is_a_config_error_naming_file_table_and_key(
    table: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        mesh({"probe": table}).read(PROBE)
    assert str(caught.value).startswith(expected)


def test_a_table_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mesh.toml: \[probe\] must be a table, got 3"):
        mesh({"probe": 3}).read(PROBE)


def test_environment_variables_override_the_file() -> None:
    environ = {
        "METRICS_MESH_PROBE_COUNT": " 7 ",
        "METRICS_MESH_PROBE_ENABLED": "yes",
        "METRICS_MESH_PROBE_TAGS": "a, b,,c",
        "METRICS_MESH_PROBE_RATIO": "0.25",
        "METRICS_MESH_OTHER_COUNT": "not ours",
    }
    settings = mesh({"probe": {"count": 3, "name": "file"}}, environ).read(PROBE)
    assert settings == ProbeSettings(
        name="file", count=7, ratio=0.25, enabled=True, tags=("a", "b", "c")
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"METRICS_MESH_PROBE_COUNT": "many"},
            "mesh.toml: environment METRICS_MESH_PROBE_COUNT: 'many' is not an integer",
        ),
        (
            {"METRICS_MESH_PROBE_ENABLED": "maybe"},
            "environment METRICS_MESH_PROBE_ENABLED: 'maybe' is not true or false",
        ),
        (
            {"METRICS_MESH_PROBE_COLOUR": "red"},
            "environment METRICS_MESH_PROBE_COLOUR: unknown [probe] key 'colour'",
        ),
        ({"METRICS_MESH_PROBE_COUNT": "-2"}, "[probe] count: -2 must be >= 0"),
    ],
)
def test_a_bad_environment_override_is_named(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        mesh({}, environ).read(PROBE)
    assert expected in str(caught.value)


def test_wrapping_with_the_file_name_keeps_the_cause() -> None:
    with pytest.raises(ConfigError) as caught:
        mesh({"probe": {"count": -1}}).read(PROBE)
    table_error = caught.value.__cause__
    assert isinstance(table_error, ConfigError)
    assert str(table_error) == "[probe] count: -1 must be >= 0"
    key_error = table_error.__cause__  # raised by the dataclass itself
    assert isinstance(key_error, ConfigError)
    assert str(key_error) == "count: -1 must be >= 0"
    with pytest.raises(ConfigError) as unknown:
        mesh({"probe": {"colour": 1}}).read(PROBE)
    assert isinstance(unknown.value.__cause__, ConfigError)


def test_a_key_of_an_unsupported_type_is_refused_when_declared() -> None:
    @dataclass(frozen=True)
    class Odd:
        when: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match=r"Odd\.when: unsupported key type"):
        Section("odd", Odd, "a table with a key the loader cannot read")


def test_keys_describe_the_table_for_help_texts() -> None:
    declared = PROBE.keys()
    keys = {key.name: key for key in declared}
    assert list(keys) == ["name", "count", "ratio", "enabled", "tags"]
    assert keys["count"].type_name == "an integer"
    assert keys["tags"].env_var == "METRICS_MESH_PROBE_TAGS"
    assert keys["ratio"].default == 0.5 and keys["ratio"].help == "a number"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_component_table_is_known_through_the_entry_points() -> None:
    assert set(known_tables()) >= {"aggregator", "gateway", "demo", "services"}


def test_an_unknown_top_level_table_names_the_file_and_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "[alertz]\nrules = []\n")
    with pytest.raises(ConfigError) as caught:
        load_mesh_file(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: unknown top-level table 'alertz'; allowed: ")
    assert "aggregator" in message and "services" in message and "alerts" in message


def test_a_file_is_parsed_once_and_each_table_read_by_its_owner(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[aggregator]\nport = 50200\n\n[[services]]\nname = "a"\nport = 8001\ntype = "core"\n',
    )
    parsed = load_mesh_file(path, environ={"METRICS_MESH_AGGREGATOR_PORT": "50300"})
    assert parsed.source == str(path)
    assert parsed.read(aggregator.SECTION).port == 50300
    assert parsed.read(SERVICES).names == ("a",)


def test_a_table_error_read_from_a_file_names_the_file_and_keeps_the_cause(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[aggregator]\nport = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_mesh_file(path, environ={}).read(aggregator.SECTION)
    assert str(caught.value) == f"{path}: [aggregator] port: must be an integer, got 'x'"
    assert isinstance(caught.value.__cause__, ConfigError)


def test_bad_toml_and_a_missing_file_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[aggregator\n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_mesh_file(path, environ={})
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.__cause__ is not None
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_mesh_file(tmp_path / "absent.toml", environ={})


def test_without_a_file_every_table_has_its_defaults() -> None:
    parsed = load_mesh_file(None, environ={})
    assert parsed.source == BUILT_IN
    assert parsed.read(aggregator.SECTION) == aggregator.AggregatorSettings()
    assert parsed.read(SERVICES) is aggregator.DEFAULT_REGISTRY


# --- wire times -----------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.0, 1.5, 0.000000001, 59.999999999, 86_400.25, -1.5])
def test_a_duration_round_trips_to_the_nanosecond(seconds: float) -> None:
    value = duration(seconds)
    assert value.ToNanoseconds() == round(seconds * 1e9)
    assert to_seconds(value) == pytest.approx(seconds, abs=1e-9)


def test_a_timestamp_round_trips_to_the_nanosecond() -> None:
    epoch = 1_750_000_000.123456
    value = timestamp(epoch)
    assert isinstance(value, Timestamp)
    assert value.seconds == 1_750_000_000
    assert abs(value.nanos - 123_456_000) < 1_000  # a float holds about a microsecond here
    assert to_seconds(value) == pytest.approx(epoch, abs=1e-6)
    assert to_seconds(timestamp(to_seconds(value))) == to_seconds(value)


def test_set_seconds_fills_a_message_field_in_place() -> None:
    row = snapshot_pb2.ServiceRow()
    assert not row.HasField("call_latency")
    set_seconds(row.call_latency, 0.25)
    assert row.HasField("call_latency")
    assert row.call_latency == Duration(seconds=0, nanos=250_000_000)
    set_seconds(row.call_latency, 2.0)  # replaces, not adds
    assert to_seconds(row.call_latency) == 2.0


def test_iso_utc_has_milliseconds_and_a_z() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_737_109_800.123) == "2025-01-17T10:30:00.123Z"


# --- the error tree and exit statuses -------------------------------------------------------


def test_every_package_error_is_a_mesh_error() -> None:
    for error in (
        ConfigError,
        AddressError,
        PortInUseError,
        ServerStateError,
        agent.AgentError,
        aggregator.AggregatorError,
        aggregator.AggregatorStateError,
        aggregator.TooManySubscribers,
        aggregator.FilterError,
    ):
        assert issubclass(error, MeshError), error
    assert aggregator.ConfigError is ConfigError
    assert issubclass(ConfigError, ValueError)  # callers catching ValueError still do


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (PortInUseError("127.0.0.1", 50100), EXIT_PORT_IN_USE),
        (ConfigError("bad"), EXIT_USAGE),
        (AddressError("bad address"), EXIT_USAGE),
        (ServerStateError("twice"), EXIT_FAILURE),
        (aggregator.AggregatorError("x"), EXIT_FAILURE),
        (RuntimeError("not ours"), EXIT_FAILURE),
    ],
)
def test_exit_status_tells_a_taken_port_from_a_usage_error(
    error: BaseException, status: int
) -> None:
    assert exit_status(error) == status
    assert (EXIT_USAGE, EXIT_PORT_IN_USE) == (2, 3)


def test_a_port_in_use_error_names_the_address() -> None:
    error = PortInUseError("::1", 50100, "Address already in use")
    assert str(error).startswith("cannot listen on [::1]:50100: the port is already in use")
    assert str(error).endswith("(Address already in use)")
    assert (error.host, error.port) == ("::1", 50100)


# --- the service filter ---------------------------------------------------------------------


def test_a_service_filter_keeps_by_name_and_type() -> None:
    everything = ServiceFilter()
    assert everything.keeps_everything and everything.keeps("a", "core")
    data = ServiceFilter.of(types=["data"])
    assert data.keeps("weather-api", "data") and not data.keeps("admin-api", "core")
    both = ServiceFilter.of(["weather-api", "admin-api"], ["data"])
    assert both.keeps("weather-api", "data") and not both.keeps("admin-api", "core")
    assert both.unknown_names(["weather-api"]) == ["admin-api"]
    assert both.key() == (("admin-api", "weather-api"), ("data",))


# --- the import floor -----------------------------------------------------------------------


def test_importing_the_gateway_loads_no_aggregator_or_agent_module() -> None:
    code = (
        "import gateway, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aggregator','agent')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


PACKAGES = ("mesh_common", "agent", "aggregator", "gateway", "metricsmesh_cli", "demo_fleet")
ROOT = Path(__file__).resolve().parent.parent


def imported_modules(source: Path) -> set[str]:
    """Every module a source file imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_package_imports_a_private_module_of_another() -> None:
    found = []
    for package in PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            for name in imported_modules(source):
                top, *rest = name.split(".")
                private = any(part.startswith("_") and not part.startswith("__") for part in rest)
                if top in PACKAGES and top != package and private:
                    found.append(f"{source.relative_to(ROOT)} imports {name}")
    assert found == []


def test_mesh_common_stands_on_nothing_of_the_components() -> None:
    modules = ", ".join(
        f"mesh_common.{path.stem}"
        for path in sorted((ROOT / "mesh_common").glob("*.py"))
        if path.stem != "__init__"
    )
    code = (
        f"import {modules}, sys; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'aggregator', 'agent', 'gateway', 'metricsmesh_cli', 'demo_fleet'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://mesh:s3cret@db:5432/m", "postgresql://mesh:***@db:5432/m"),
        ("postgres://mesh:p@ss@db/m?sslmode=require", "postgres://mesh:***@db/m?sslmode=require"),
        ("postgresql://db/m?user=mesh&password=s3cret&x=1", "postgresql://db/m?user=mesh&password=***&x=1"),
        ("host=db password='s e c' user=mesh", "host=db password=*** user=mesh"),
        ("at postgresql://mesh:s3cret@db/m: refused", "at postgresql://mesh:***@db/m: refused"),
        ("postgresql://mesh@db/m", "postgresql://mesh@db/m"),  # no password: unchanged
        ("password authentication failed for user", "password authentication failed for user"),
    ],
)  # fmt: skip
def test_redact_masks_a_url_password_in_every_form(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_also_masks_the_configured_password_quoted_outside_a_url() -> None:
    url = "postgresql://mesh:p%40ss-w0rd@db/m"
    assert redact("bad password p@ss-w0rd or p%40ss-w0rd", url) == "bad password *** or ***"
