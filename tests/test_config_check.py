"""`metrics-mesh config check [FILE]`: the real command on real files in tmp_path."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from mesh_common.config import known_tables
from mesh_common.errors import EXIT_USAGE
from mesh_common.registry import DEFAULT_REGISTRY
from tests.cli import METRICS_MESH, needs_cli

pytestmark = needs_cli

GOOD = """
[aggregator]
port = 50200
interval_seconds = 2.0

[gateway]
aggregator = "127.0.0.1:50200"
admin_token = "s3cret-token"

[[services]]
name = "billing"
port = 9100
type = "core"

[[services]]
name = "rates-feed"
port = 9101
agent_port = 19999
type = "data"
data_source = "fx"

[[alerts.rules]]
name = "HighErrorRate"
figure = "error_rate"
comparator = ">"
threshold = 0.05
clear_threshold = 0.03
for_seconds = 30
severity = "high"
types = ["data"]
"""


def check(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real console script, with no METRICS_MESH_* variable but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_MESH_")}
    return subprocess.run(
        [str(METRICS_MESH), "config", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        cwd=cwd,
        check=False,
    )


def setting_line(out: str, key: str, after: str) -> str:
    """The listing's line of `key`, in the table whose heading contains `after`."""
    start = out.index(after)
    match = re.search(rf"^    {key}\s+.*$", out[start:], flags=re.MULTILINE)
    assert match is not None, (key, out)
    return match.group(0)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_lists_each_components_settings_marked_by_origin(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = check(str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"checking {path}\n")
    for heading in ("aggregator (metrics-mesh aggregator", "gateway (metrics-mesh gateway"):
        assert heading in out
    for table in known_tables():  # every declared table is shown
        assert re.search(rf"^  \[\[?{table}\]\]? ", out, flags=re.MULTILINE), table
    assert re.fullmatch(r"\s+port\s+50200\s+file", setting_line(out, "port", "[aggregator]"))
    assert re.fullmatch(r"\s+host\s+\"127.0.0.1\"\s+default", setting_line(out, "host", "[agg"))
    assert setting_line(out, "interval_seconds", "[aggregator]").split()[1:] == ["2.0", "file"]
    assert setting_line(out, "port", "[gateway]").split()[1:] == ["8000", "default"]
    assert out.rstrip().endswith(f"{path}: OK ({len(known_tables())} tables)")


def test_the_registry_and_the_rules_of_the_file_are_listed(tmp_path: Path) -> None:
    out = check(str(write(tmp_path, GOOD))).stdout
    assert "2 services, from the file:" in out
    assert re.search(r"billing\s+core\s+port 9100\s+agent 127.0.0.1:19100", out)
    assert re.search(r"rates-feed\s+data \(fx\)\s+port 9101\s+agent 127.0.0.1:19999", out)
    assert "1 rule(s) from [[alerts.rules]]:" in out
    assert "HighErrorRate: error_rate > 0.05 (clears at 0.03) for 30s, high; types data" in out


def test_a_secret_is_never_printed(tmp_path: Path) -> None:
    out = check(str(write(tmp_path, GOOD))).stdout
    assert "s3cret-token" not in out
    assert "(set, 12 characters)" in setting_line(out, "admin_token", "[gateway]")


def test_a_url_is_printed_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://mesh:mesh-s3cret%40pw@db.internal:5432/metrics?sslmode=require"
    done = check(str(write(tmp_path, f'[history]\nurl = "{url}"\n')))
    assert done.returncode == 0, done.stderr
    line = setting_line(done.stdout, "url", "[history]")
    assert '"postgresql://mesh:***@db.internal:5432/metrics?sslmode=require"' in line
    assert "s3cret" not in done.stdout + done.stderr
    # libpq's query form; an environment override; an error about the URL: the same.
    done = check(str(write(tmp_path, '[history]\nurl = "postgresql://db/m?password=s3cret"\n')))
    assert "password=***" in setting_line(done.stdout, "url", "[history]")
    env = {"METRICS_MESH_HISTORY_URL": "postgres://mesh:s3cret@db/m"}
    done = check(str(write(tmp_path, "")), env=env)
    assert '"postgres://mesh:***@db/m"' in setting_line(done.stdout, "url", "[history]")
    done = check(str(write(tmp_path, '[history]\nurl = "postgresql://mesh:zq9x/wv7k@db/m"\n')))
    assert done.returncode == 2 and "not a valid URL" in done.stderr  # an unencoded /
    assert "zq9x" not in done.stdout + done.stderr and "wv7k" not in done.stdout + done.stderr


def test_an_environment_override_is_shown_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    env = {"METRICS_MESH_AGGREGATOR_PORT": "50300", "METRICS_MESH_GATEWAY_PORT": "8123"}
    result = check(str(path), env=env)
    assert result.returncode == 0, result.stderr
    aggregator = setting_line(result.stdout, "port", "[aggregator]")
    assert aggregator.split()[1:3] == ["50300", "env"]
    assert "METRICS_MESH_AGGREGATOR_PORT (over the file's value)" in aggregator
    gateway = setting_line(result.stdout, "port", "[gateway]")
    assert gateway.split()[1:] == ["8123", "env", "METRICS_MESH_GATEWAY_PORT"]


def test_without_file_it_checks_what_the_programs_would_read(tmp_path: Path) -> None:
    built_in = check(cwd=tmp_path)
    assert built_in.returncode == 0, built_in.stderr
    first = built_in.stdout.splitlines()[0]
    assert "no FILE and $METRICS_MESH_CONFIG is not set" in first and "built-in defaults" in first
    assert f"{len(DEFAULT_REGISTRY)} services, the built-in registry" in built_in.stdout
    assert "built-in defaults: OK" in built_in.stdout
    path = write(tmp_path, GOOD)
    named = check(env={"METRICS_MESH_CONFIG": str(path)})
    assert named.returncode == 0, named.stderr
    assert named.stdout.startswith(f"checking {path} (from $METRICS_MESH_CONFIG")
    assert "2 services, from the file:" in named.stdout


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        pytest.param("[aggregator\nport = 1\n", {}, "not valid TOML", id="bad TOML"),
        pytest.param("[agregator]\nport = 1\n", {}, "unknown top-level table 'agregator'",
                     id="unknown table"),
        pytest.param("[gateway]\nprot = 8001\n", {}, "[gateway] unknown key 'prot'",
                     id="unknown key"),
        pytest.param('[gateway]\nport = "8001"\n', {},
                     "[gateway] port: must be an integer, got '8001'", id="wrong type"),
        pytest.param("[aggregator]\ninterval_seconds = 1.0\ndeadline_seconds = 2.0\n", {},
                     "[aggregator] deadline_seconds: 2.0 must be shorter than interval_seconds",
                     id="refused value"),
        pytest.param('[[services]]\nname = "a"\nport = 70000\ntype = "core"\n', {},
                     "services[0] ('a'): port 70000 is not in 1..65535", id="bad service"),
        pytest.param('[[alerts.rules]]\nname = "R"\nfigure = "nope"\ncomparator = ">"\n'
                     "threshold = 1\n", {}, "[[alerts.rules]] 0: rule field 'figure'",
                     id="bad rule"),
        pytest.param('[[alerts.rules]]\nname = "R"\nfigure = "error_rate"\ncomparator = ">"\n'
                     'threshold = 1\nservices = ["weather-api", "nosuch"]\n', {},
                     "[[alerts.rules]] 0 ('R'): rule field 'services': unknown service name "
                     "'nosuch'; known: admin-api, ", id="rule on an unknown service"),
        pytest.param('[[services]]\nname = "a"\nport = 9000\ntype = "core"\n\n'
                     '[[alerts.rules]]\nname = "R"\nfigure = "error_rate"\ncomparator = ">"\n'
                     'threshold = 1\ntypes = ["quantum", "data"]\n', {},
                     "[[alerts.rules]] 0 ('R'): rule field 'types': unknown service types "
                     "'data', 'quantum'; known: core", id="rule on an unknown type"),
        pytest.param("", {"METRICS_MESH_DEMO_LOAD_SCALE": "lots"},
                     "environment METRICS_MESH_DEMO_LOAD_SCALE: 'lots' is not a number",
                     id="bad env override"),
    ],
)  # fmt: skip
def test_each_kind_of_error_names_file_table_and_key_and_exits_2(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, text)
    result = check(str(path), env=env)
    assert result.returncode == EXIT_USAGE
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {path}: ")
    assert expected in errors[0]
    assert "OK" not in result.stdout


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    result = check(str(tmp_path / "nowhere.toml"))
    assert result.returncode == EXIT_USAGE
    assert f"{tmp_path / 'nowhere.toml'}: cannot read the configuration file" in result.stderr


def test_every_key_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[aggregator]
port = "fifty"
intervall_seconds = 2

[gateway]
nope = 1

[[services]]
name = "a"
port = 0
type = "core"
""",
    )
    result = check(str(path), env={"METRICS_MESH_GATEWAY_PORT": "eighty"})
    assert result.returncode == EXIT_USAGE
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    for expected in (
        "[aggregator] port: must be an integer",
        "[aggregator] unknown key 'intervall_seconds'",
        "[gateway] unknown key 'nope'",
        "environment METRICS_MESH_GATEWAY_PORT: 'eighty' is not an integer",
        "services[0] ('a'): port 0 is not in 1..65535",
    ):
        assert sum(expected in error for error in errors) == 1, (expected, errors)
    assert len(errors) == 5
    assert result.stderr.rstrip().endswith(f"5 error(s) in {path}")


def test_a_rule_on_an_unknown_service_is_reported_with_the_other_key_errors(
    tmp_path: Path,
) -> None:
    text = GOOD.replace('types = ["data"]', 'services = ["billing", "biling"]')
    path = write(tmp_path, text + "\n[gateway.nope]\n")
    result = check(str(path))
    assert result.returncode == EXIT_USAGE
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, result.stderr
    assert errors[0] == (
        f"error: {path}: [[alerts.rules]] 0 ('HighErrorRate'): rule field 'services': "
        "unknown service name 'biling'; known: billing, rates-feed"
    )
    assert errors[1].startswith(f"error: {path}: [gateway] unknown key 'nope'; allowed: ")
    assert result.stderr.rstrip().endswith(f"2 error(s) in {path}")
    assert "HighErrorRate:" not in result.stdout  # not listed as a rule in force


def test_a_variable_naming_no_table_is_warned_about(tmp_path: Path) -> None:
    result = check(str(write(tmp_path, GOOD)), env={"METRICS_MESH_GATWAY_PORT": "1"})
    assert result.returncode == 0
    assert "warning: environment METRICS_MESH_GATWAY_PORT names no table" in result.stderr


def test_it_says_where_each_component_finds_the_aggregator(tmp_path: Path) -> None:
    out = check(str(write(tmp_path, GOOD))).stdout
    assert "  the aggregator listens on 127.0.0.1:50200\n" in out
    assert "  the gateway subscribes to 127.0.0.1:50200\n" in out
    assert "  metrics-mesh snapshot, top and alerts dial 127.0.0.1:50200\n" in out
    assert "note:" not in out


def test_a_gateway_pointed_elsewhere_than_the_aggregator_gets_a_note(tmp_path: Path) -> None:
    result = check(str(write(tmp_path, "[aggregator]\nport = 50200\n")))
    assert result.returncode == 0  # a note, not an error: it may be another aggregator
    assert "note: the gateway's aggregator (127.0.0.1:50100) is not where" in result.stdout
    assert "[aggregator] listens (127.0.0.1:50200)" in result.stdout


def test_the_help_says_what_it_checks_and_where_the_file_comes_from() -> None:
    result = check("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "usage: metrics-mesh config check [-h] [--version] [FILE]" in text
    assert "Without FILE: $METRICS_MESH_CONFIG, else the built-in defaults." in text
    assert "exit with status 2" in text
