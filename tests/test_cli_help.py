"""`metrics-mesh ... --help` documents every option, the config file and the env overrides."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from aggregator import AggregatorSettings
from demo_fleet.settings import DemoSettings
from gateway import GatewaySettings
from metricsmesh_cli.main import build_parser

SECTIONS = {
    "demo": ("demo", DemoSettings),
    "aggregator": ("aggregator", AggregatorSettings),
    "gateway": ("gateway", GatewaySettings),
}


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["demo", "aggregator", "gateway", "snapshot", "top"])
def test_every_subcommand_documents_the_config_file_and_env_overrides(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(command, capsys)
    assert "--config FILE" in text and "METRICS_MESH_CONFIG" in text
    assert "METRICS_MESH_<SECTION>_<KEY>" in text and "METRICS_MESH_AGGREGATOR_PORT" in text


@pytest.mark.parametrize("command", sorted(SECTIONS))
def test_the_section_keys_in_the_help_are_exactly_the_settings(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    section, settings = SECTIONS[command]
    text = help_of(command, capsys)
    match = re.search(
        rf"\[{section}\] keys \(env METRICS_MESH_{section.upper()}_<KEY>\): (.*?)\n\n",
        text + "\n\n",
        flags=re.DOTALL,
    )
    assert match, text
    listed = {key.split()[0] for key in match.group(1).replace("\n", " ").split(", ")}
    fields = {field.name for field in dataclasses.fields(settings)} - {"services_configured"}
    assert listed == fields


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("demo", ["--port-offset", "--free-ports", "--run-dir", "--load-scale", "--no-misbehave"]),
        ("aggregator", ["--host", "--port", "--log-level"]),
        ("gateway", ["--host", "--port", "--aggregator", "--access-log", "--log-level"]),
        ("snapshot", ["--aggregator", "--type", "--service", "--output", "--max-age", "--timeout"]),
        ("top", ["--aggregator", "--type", "--service", "--interval", "--count"]),
    ],
)
def test_each_option_is_documented(
    command: str, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(command, capsys)
    for option in options:
        assert option in text


@pytest.mark.parametrize("module", ["aggregator", "gateway"])
def test_the_server_subcommands_offer_what_python_m_offers(
    module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = set(re.findall(r"--[a-z-]+", help_of(module, capsys)))
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    theirs = set(re.findall(r"--[a-z-]+", result.stdout))
    assert theirs - {"--help"} <= ours


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["top", "--interval", "-1"], "--interval: '-1' must be a finite number >= 0"),
        (["top", "--count", "0"], "--count: '0' must be >= 1"),
        (["snapshot", "--timeout", "0"], "--timeout: '0' must be > 0"),
        (["snapshot", "--max-age", "soon"], "--max-age: 'soon' is not a number of seconds"),
        (["demo", "--free-ports", "--port-offset", "5"], "not allowed with argument"),
    ],
)
def test_bad_options_are_refused_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
