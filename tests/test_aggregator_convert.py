"""The wire rows: the agent's figures re-tagged into a ServiceRow are those parsing and copying
each field gives, whatever the answer holds (kinds, latency, unknown fields, a group)."""

from __future__ import annotations

import pytest
from metricsmesh.v1 import event_rate_pb2, snapshot_pb2

from agent import EventTracker
from agent._convert import reading_to_response
from aggregator._convert import AGENT_FIELDS, add_row, copy_agent_fields
from aggregator._errors import RetagError
from aggregator._fanout import parse_figures
from aggregator._model import Health, RowData
from aggregator._retag import Retag
from mesh_common.registry import ServiceEntry
from mesh_common.status import ServiceStatus

ENTRY = ServiceEntry("api", "127.0.0.1", 8000, 9000, "core")
UNKNOWN_VARINT = b"\x98\x06\x2a"  # field 99, varint 42
UNKNOWN_BYTES = b"\x9a\x06\x03abc"  # field 99, 3 bytes
A_GROUP = b"\xa3\x06\x08\x01\xa4\x06"  # field 100, a group holding field 1 = 1


def answer(events: int, *, timed: bool) -> bytes:
    now = [0.0]
    tracker = EventTracker("api", clock=lambda: now[0])
    for index in range(events):
        if timed:
            tracker.observe(
                "fetch" if index % 2 else "parse", 0.001 * (index + 1), error=index == 3
            )
        else:
            tracker.record()
        now[0] += 0.5
    return reading_to_response(tracker.read()).SerializeToString()


def row_of(data: bytes) -> RowData:
    figures = parse_figures(data)
    return RowData(
        ENTRY, ServiceStatus.ACTIVE, Health.SERVING, "", 0.002, 0, figures, 1.0, 1.7e9, 0.0
    )


def copied(data: bytes) -> snapshot_pb2.ServiceRow:
    """The row as the plain path builds it: the header fields, then each agent field copied."""
    expected = snapshot_pb2.Snapshot().services
    message = add_row(expected, row_of(b""))
    message.ClearField("last_seen_time")
    message.ClearField("last_seen_age")
    copy_agent_fields(data, message)
    message.last_seen_time.FromSeconds(1_700_000_000)
    message.last_seen_age.FromSeconds(0)
    return message


@pytest.mark.parametrize(
    "data",
    [
        b"",
        answer(0, timed=False),
        answer(5, timed=False),
        answer(40, timed=True),
        answer(40, timed=True) + UNKNOWN_VARINT + UNKNOWN_BYTES,
        UNKNOWN_BYTES + answer(7, timed=True) + A_GROUP,
    ],
    ids=["empty", "no events", "untimed", "kinds", "unknown fields", "a group"],
)
def test_a_wire_row_holds_the_answer_as_parsing_and_copying_would(data: bytes) -> None:
    rows = snapshot_pb2.Snapshot().services
    built = add_row(rows, row_of(data))
    assert built == copied(data)
    assert built.service_name == "api" and built.agent_port == 9000
    if data:
        assert (
            built.total_events == event_rate_pb2.GetEventRateResponse.FromString(data).total_events
        )


def test_retag_keeps_every_shared_field_and_drops_the_others() -> None:
    retag = Retag(
        event_rate_pb2.GetEventRateResponse.DESCRIPTOR,
        snapshot_pb2.ServiceRow.DESCRIPTOR,
        AGENT_FIELDS,
    )
    data = answer(40, timed=True)
    row = snapshot_pb2.ServiceRow.FromString(retag(data))
    source = event_rate_pb2.GetEventRateResponse.FromString(data)
    assert {field.name for field, _ in row.ListFields()} == {
        field.name for field, _ in source.ListFields() if field.name in AGENT_FIELDS
    }
    assert list(row.kinds) == list(source.kinds)
    assert row.latency == source.latency
    assert row.service_name == ""  # not an agent field: the registry names the row


def test_retag_refuses_a_group_and_a_truncated_message() -> None:
    retag = Retag(
        event_rate_pb2.GetEventRateResponse.DESCRIPTOR,
        snapshot_pb2.ServiceRow.DESCRIPTOR,
        AGENT_FIELDS,
    )
    with pytest.raises(RetagError):
        retag(A_GROUP)
    with pytest.raises(RetagError):
        retag(answer(5, timed=True)[:-3])


def test_retag_refuses_fields_of_the_same_name_but_another_type() -> None:
    with pytest.raises(ValueError, match="'kinds' differs"):
        Retag(
            event_rate_pb2.GetEventRateResponse.DESCRIPTOR,
            event_rate_pb2.GetEventRateRequest.DESCRIPTOR,
            ["kinds"],
        )
