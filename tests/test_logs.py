"""Log lines an operator reads: one per status change of a service and per alert change, on
stderr, as text or JSON (`--log-format`); `mesh_common.logs` sets up every program."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc

from agent import AgentServer
from aggregator import DEFAULT_REGISTRY
from mesh_common import logs
from mesh_common.transport import open_channel
from tests.aggregator_fleet import Fleet, fleet
from tests.eventually import eventually

WATCHED = DEFAULT_REGISTRY[1].name
"""The service whose agent the tests stop and start again."""


# --- the formatter --------------------------------------------------------------------------


def test_json_lines_carry_time_level_logger_message_and_the_extra_fields() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream=stream)
    logs.configure("INFO", "json", stream=stream)  # a second call replaces, never doubles
    try:
        logging.getLogger("aggregator.status").warning(
            "service %s: %s -> %s (%s)",
            "admin-api",
            "active",
            "inactive",
            "UNAVAILABLE: down",
            extra={"service": "admin-api", "from": "active", "to": "inactive", "reason": "x"},
        )
        logging.getLogger("quiet").debug("below the level")
        logging.getLogger("httpx").info("HTTP Request: GET /healthz")  # a probe's chatter
    finally:
        logs.configure("WARNING", "text", stream=io.StringIO())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    item = json.loads(lines[0])
    assert item["message"] == "service admin-api: active -> inactive (UNAVAILABLE: down)"
    assert (item["level"], item["logger"]) == ("WARNING", "aggregator.status")
    assert (item["service"], item["from"], item["to"], item["reason"]) == (
        "admin-api",
        "active",
        "inactive",
        "x",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["time"])


def test_text_lines_read_time_level_logger_message() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "text", stream=stream)
    try:
        logging.getLogger("aggregator.alerts").info("alert X on y: pending -> firing (value 1)")
    finally:
        logs.configure("WARNING", "text", stream=io.StringIO())
    line = stream.getvalue().strip()
    assert line.endswith(" INFO aggregator.alerts: alert X on y: pending -> firing (value 1)")


# --- a real aggregator process ------------------------------------------------------------


def write_config(mesh: Fleet, path: Path, state_dir: Path) -> Path:
    """The fleet's registry, quick rounds and one rule: any service not active, at once."""
    lines = [
        "[aggregator]",
        "interval_seconds = 0.3",
        "deadline_seconds = 0.2",
        "",
        "[alerts]",
        f'state_dir = "{state_dir}"',
        "",
        "[[alerts.rules]]",
        'name = "ServiceDown"',
        'figure = "status"',
        'comparator = "!="',
        'threshold = "active"',
        'severity = "critical"',
        "",
    ]
    for entry in mesh.registry:
        lines += [
            "[[services]]",
            f'name = "{entry.name}"',
            f"port = {entry.port}",
            f"agent_port = {entry.agent_port}",
            f'type = "{entry.type}"',
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Aggregator:
    """`python -m aggregator` with its stderr read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.address = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode().rstrip("\n"))

    def matching(self, pattern: str) -> list[str]:
        """The lines so far that contain `pattern`."""
        return [line for line in self.lines if pattern in line]

    async def rounds(self) -> int:
        """The sequence of the aggregator's latest snapshot."""
        channel = open_channel(self.address)
        try:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            request = aggregator_pb2.GetSnapshotRequest()
            response = await stub.GetSnapshot(request, timeout=5)
            return int(response.snapshot.sequence)
        finally:
            await channel.close()

    async def more_rounds(self, count: int) -> None:
        """Wait until `count` more rounds have run (time passes as rounds, not as sleeps)."""
        target = await self.rounds() + count
        await eventually(self._reached(target), what=f"round {target}")

    def _reached(self, target: int) -> Any:
        async def probe() -> bool:
            return await self.rounds() >= target

        return probe

    async def stop(self) -> str:
        """SIGTERM; the rest of stderr once it has exited (status 0 asserted)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 20)
        await asyncio.wait_for(self._reader, 10)
        assert code == 0, "\n".join(self.lines)
        return "\n".join(self.lines)


@asynccontextmanager
async def aggregator(config: Path, log_format: str) -> AsyncIterator[Aggregator]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator",
        "--config",
        str(config),
        "--port",
        "0",
        "--log-format",
        log_format,
        stderr=asyncio.subprocess.PIPE,
    )
    running = Aggregator(process)
    try:

        def serving() -> str | None:
            found = running.matching("aggregator serving on ")
            return found[0] if found else None

        line = await eventually(serving, timeout=30, what="the aggregator to serve")
        match = re.search(r"aggregator serving on (\S+)", line)
        assert match, line
        running.address = match.group(1)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop_and_restart(mesh: Fleet, running: Aggregator) -> None:
    """Stop the watched agent, let rounds pass, start it again on the same port."""
    agent = mesh.agents[WATCHED]
    port = agent.port
    await agent.stop(0)
    await eventually(
        lambda: running.matching(f"{WATCHED}: active -> inactive"),
        what="the active -> inactive line",
    )
    await running.more_rounds(6)  # still down: no more lines about it
    again = AgentServer(agent.tracker, port=port, grace_seconds=0)
    await again.start()
    mesh.extra.append(again)
    await eventually(
        lambda: running.matching(f"{WATCHED}: inactive -> active"),
        what="the inactive -> active line",
    )
    await running.more_rounds(4)


async def test_one_text_line_per_status_change_not_one_per_round(tmp_path: Path) -> None:
    async with fleet(DEFAULT_REGISTRY[:3], broken=False) as mesh:
        config = write_config(mesh, tmp_path / "mesh.toml", tmp_path)
        async with aggregator(config, "text") as running:
            await eventually(
                lambda: len(running.matching("unknown -> active")) == 3,
                what="three unknown -> active lines",
            )
            await stop_and_restart(mesh, running)
            output = await running.stop()
    about = [line for line in output.splitlines() if f"service {WATCHED}:" in line]
    assert len(about) == 3, output
    assert about[0].endswith(
        f"INFO aggregator.status: service {WATCHED}: unknown -> active (answered)"
    )
    assert re.search(
        rf"WARNING aggregator\.status: service {WATCHED}: active -> inactive "
        r"\((UNAVAILABLE|CANCELLED)",
        about[1],
    ), about[1]
    assert about[2].endswith(f"service {WATCHED}: inactive -> active (answered)")
    # The alert rule: one line when it fires, one when it resolves; none for the others.
    alerts = [line for line in output.splitlines() if "aggregator.alerts" in line]
    assert len(alerts) == 2, output
    assert f"alert ServiceDown on {WATCHED}: inactive -> firing (value inactive)" in alerts[0]
    assert f"alert ServiceDown on {WATCHED}: firing -> resolved (value active)" in alerts[1]


async def test_json_lines_parse_and_carry_the_change_as_keys(tmp_path: Path) -> None:
    async with fleet(DEFAULT_REGISTRY[:3], broken=False) as mesh:
        config = write_config(mesh, tmp_path / "mesh.toml", tmp_path)
        async with aggregator(config, "json") as running:
            await eventually(
                lambda: len(running.matching('"from": "unknown"')) == 3,
                what="three changes from unknown",
            )
            await stop_and_restart(mesh, running)
            output = await running.stop()
    items = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    for item in items:
        assert {"time", "level", "logger", "message"} <= item.keys(), item
    changes = [
        item
        for item in items
        if item["logger"] == "aggregator.status" and item["service"] == WATCHED
    ]
    assert [(item["from"], item["to"]) for item in changes] == [
        ("unknown", "active"),
        ("active", "inactive"),
        ("inactive", "active"),
    ]
    assert changes[1]["level"] == "WARNING" and changes[1]["reason"]
    assert (
        changes[1]["message"] == f"service {WATCHED}: active -> inactive ({changes[1]['reason']})"
    )
    alerts = [item for item in items if item["logger"] == "aggregator.alerts"]
    assert [(a["alert"], a["service"], a["from"], a["to"], a["value"]) for a in alerts] == [
        ("ServiceDown", WATCHED, "inactive", "firing", "inactive"),
        ("ServiceDown", WATCHED, "firing", "resolved", "active"),
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_every_program_takes_log_format(log_format: str) -> None:
    from metricsmesh_cli.main import build_parser

    parser = build_parser()
    for command in ("aggregator", "gateway", "demo"):
        args = parser.parse_args([command, "--log-format", log_format, "--log-level", "debug"])
        assert (args.log_format, args.log_level) == (log_format, "DEBUG")
    from demo_fleet.service import parse_args

    options = parse_args(
        ["--name", "x", "--port", "1", "--agent-port", "2", "--log-format", log_format]
    )
    assert options.log_format == log_format


async def test_the_gateway_logs_json_lines_uvicorn_included() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--port",
        "0",
        "--aggregator",
        "127.0.0.1:1",  # nobody there: the upstream state changes are logged too
        "--log-format",
        "json",
        stderr=asyncio.subprocess.PIPE,
    )
    items: list[dict[str, Any]] = []
    try:
        assert process.stderr is not None
        while not any(item["message"] == "Application startup complete." for item in items):
            line = await asyncio.wait_for(process.stderr.readline(), 20)
            assert line, items
            items.append(json.loads(line))
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 20)
    loggers = {item["logger"] for item in items}
    assert {"gateway", "uvicorn.error"} <= loggers, loggers
    assert not any("color_message" in item for item in items)
