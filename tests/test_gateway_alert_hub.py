"""The gateway's AlertHub and AlertFeed: the current alerts, and a client's cursor in their changes.

Fed by hand (the messages the subscription receives), with a fake wall clock; the real
subscription is exercised against a real aggregator in test_gateway_alerts.py.
"""

from __future__ import annotations

from metricsmesh.v1 import alerts_pb2

from gateway._alerts import RESOLVED_KEPT_SECONDS, AlertFeed, AlertHub
from mesh_common.wire_time import timestamp
from tests.clocks import FakeClock

FIRING = alerts_pb2.ALERT_STATE_FIRING
PENDING = alerts_pb2.ALERT_STATE_PENDING
RESOLVED = alerts_pb2.ALERT_STATE_RESOLVED
INACTIVE = alerts_pb2.ALERT_STATE_INACTIVE


def alert(service: str, state: int, severity: str = "critical", **times: float) -> alerts_pb2.Alert:
    message = alerts_pb2.Alert(
        id=f"r1/{service}",
        rule_id="r1",
        name="Rule",
        service_name=service,
        service_type="core" if service.startswith("c") else "data",
        state=state,
        severity=severity,
        active_time=timestamp(times.get("active", 1000.0)),
    )
    if "resolved" in times:
        message.resolved_time.CopyFrom(timestamp(times["resolved"]))
    return message


def change(sequence: int, message: alerts_pb2.Alert) -> alerts_pb2.AlertChange:
    return alerts_pb2.AlertChange(sequence=sequence, alert=message)


def hub(clock: FakeClock, log_size: int = 1000) -> AlertHub:
    return AlertHub("127.0.0.1:1", wall=clock, monotonic=clock, log_size=log_size)


async def test_current_alerts_come_firing_first_then_by_severity(clock: FakeClock) -> None:
    alerts = hub(clock)
    alerts._replace(
        alerts_pb2.ListAlertsResponse(
            alerts=[
                alert("d-pending", PENDING),
                alert("c-warning", FIRING, "warning"),
                alert("d-critical", FIRING, "critical", active=1005.0),
                alert("c-done", RESOLVED, resolved=clock.now),
            ],
            last_sequence=7,
        )
    )
    assert [e.service_name for e in alerts.current()] == ["d-critical", "c-warning", "d-pending"]
    assert alerts.current(include_resolved=True)[-1].service_name == "c-done"
    assert alerts.sequence == 7


async def test_a_feed_gets_the_current_alerts_then_each_change_once(clock: FakeClock) -> None:
    alerts = hub(clock)
    alerts._replace(alerts_pb2.ListAlertsResponse(alerts=[alert("c1", FIRING)], last_sequence=3))
    feed = AlertFeed(alerts, current=True)
    assert [e.json["state"] for e in feed.take()] == ["firing"]
    assert feed.take() == []
    marker = feed.marker()
    alerts._apply(change(4, alert("d1", PENDING)))
    assert marker.is_set()
    alerts._apply(change(4, alert("d1", FIRING)))  # a sequence already applied: ignored
    alerts._apply(change(5, alert("c1", RESOLVED, resolved=clock.now)))
    assert [(e.service_name, e.json["state"]) for e in feed.take()] == [
        ("d1", "pending"),
        ("c1", "resolved"),
    ]
    late = AlertFeed(alerts, current=True)
    assert [e.service_name for e in late.take()] == ["d1"]  # resolved ones are not current


async def test_a_feed_keeps_only_its_services(clock: FakeClock) -> None:
    alerts = hub(clock)
    feed = AlertFeed(alerts, current=False)
    alerts._apply(change(1, alert("c1", FIRING)))
    alerts._apply(change(2, alert("d1", FIRING)))
    assert [e.service_name for e in feed.take(lambda name, kind: kind == "data")] == ["d1"]


async def test_a_feed_too_far_behind_gets_the_current_alerts(clock: FakeClock) -> None:
    alerts = hub(clock, log_size=3)
    feed = AlertFeed(alerts, current=False)
    for sequence in range(1, 6):
        alerts._apply(change(sequence, alert(f"c{sequence}", FIRING)))
    assert sorted(e.service_name for e in feed.take()) == ["c1", "c2", "c3", "c4", "c5"]
    assert feed.take() == []


async def test_a_dropped_pending_alert_leaves_the_current_set_but_is_sent(clock: FakeClock) -> None:
    alerts = hub(clock)
    feed = AlertFeed(alerts, current=False)
    alerts._apply(change(1, alert("c1", PENDING)))
    alerts._apply(change(2, alert("c1", INACTIVE)))
    assert alerts.current(include_resolved=True) == []
    assert [e.json["state"] for e in feed.take()] == ["pending", "inactive"]


async def test_resolved_alerts_are_kept_fifteen_minutes(clock: FakeClock) -> None:
    alerts = hub(clock)
    alerts._apply(change(1, alert("c1", RESOLVED, resolved=clock.now)))
    clock.tick(RESOLVED_KEPT_SECONDS - 1)
    assert len(alerts.current(include_resolved=True)) == 1
    clock.tick(2)
    assert alerts.current(include_resolved=True) == []


async def test_a_reconnect_takes_the_whole_list_and_publishes_only_what_changed(
    clock: FakeClock,
) -> None:
    alerts = hub(clock)
    alerts._replace(
        alerts_pb2.ListAlertsResponse(
            alerts=[alert("c1", FIRING), alert("c2", FIRING)], last_sequence=9
        )
    )
    feed = AlertFeed(alerts, current=False)
    # The aggregator restarted: its numbering starts again, c2 is gone, c3 is new.
    alerts._replace(
        alerts_pb2.ListAlertsResponse(
            alerts=[alert("c1", FIRING), alert("c3", PENDING)], last_sequence=1
        )
    )
    assert [e.service_name for e in feed.take()] == ["c3"]
    assert sorted(e.service_name for e in alerts.current()) == ["c1", "c3"]
    assert alerts.sequence == 1
    # The stream's start repeats the current alerts (sequence 0): nothing new for clients.
    alerts._apply(change(0, alert("c1", FIRING)))
    assert feed.take() == []
