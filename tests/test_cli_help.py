"""`metrics-mesh ... --help` documents every option, the config file and the env overrides."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from typing import Any

import pytest

from aggregator import SECTION as AGGREGATOR
from demo_fleet.settings import SECTION as DEMO
from gateway import SECTION as GATEWAY
from mesh_common.config import Section
from metricsmesh_cli.main import SUBCOMMANDS, build_parser, main

SECTIONS: dict[str, Section[Any]] = {"demo": DEMO, "aggregator": AGGREGATOR, "gateway": GATEWAY}


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_the_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert re.search(rf"^\s+{command}\b", text, flags=re.MULTILINE), command
    assert "METRICS_MESH_CONFIG" in text


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_documents_the_config_file_and_env_overrides(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(command, capsys)
    assert "--config FILE" in text and "METRICS_MESH_CONFIG" in text
    assert "METRICS_MESH_<TABLE>_<KEY>" in text and "METRICS_MESH_AGGREGATOR_PORT" in text


@pytest.mark.parametrize("command", sorted(SECTIONS))
def test_the_table_keys_in_the_help_are_exactly_the_settings(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    section = SECTIONS[command]
    text = help_of(command, capsys)
    start = text.index(f"[{section.table}] keys ({section.env_prefix}<KEY> overrides):")
    end = text.find("\n[", start + 1)  # the next table's keys (the aggregator shows [alerts] too)
    listed = set(
        re.findall(r"^\s+(\w+): ", text[start : end if end > 0 else None], flags=re.MULTILINE)
    )
    derived = {"services_configured"}  # computed from the registry, not a key
    fields = {field.name for field in dataclasses.fields(section.settings_type)} - derived
    assert listed == fields


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "demo",
            [
                "--port-offset",
                "--free-ports",
                "--run-dir",
                "--load-scale",
                "--no-misbehave",
                "--secure",
            ],
        ),
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
def test_the_server_subcommands_are_what_python_m_offers(
    module: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    ours = help_of(module, capsys)
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    # The same description, options and epilog; only the usage line names another program.
    assert ours.split("\n\n", 1)[1] == result.stdout.split("\n\n", 1)[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["top", "--interval", "-1"], "--interval: '-1' must be a finite number >= 0"),
        (["top", "--count", "0"], "--count: '0' must be >= 1"),
        (["snapshot", "--timeout", "0"], "--timeout: '0' must be > 0"),
        (["snapshot", "--max-age", "soon"], "--max-age: 'soon' is not a number of seconds"),
        (["aggregator", "--port", "70000"], "--port: '70000' is not in 0..65535"),
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


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:99999", "::1:50100"])
@pytest.mark.parametrize("command", ["snapshot", "top", "alerts"])
def test_an_aggregator_address_that_is_not_host_port_is_a_usage_error(
    command: str, address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--aggregator", address])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--aggregator" in err and "HOST:PORT" in err and repr(address) in err


def test_a_subcommand_declares_only_its_own_options() -> None:
    parser = build_parser({"snapshot"})
    with pytest.raises(SystemExit):
        parser.parse_args(["aggregator", "--port", "1"])  # not declared: unrecognized
    assert parser.parse_args(["snapshot", "-o", "json"]).output == "json"
