"""`metrics-mesh alerts`: the aggregator's alerts (ListAlerts) as a table or JSON.

`-o json` prints the body of the gateway's `GET /api/v1/alerts/active` (the alerts as the
gateway's alert REST API writes them: snake_case names, the state as a word, ISO 8601 times);
`-o protobuf-json` prints the ListAlertsResponse in protobuf's JSON mapping.

Also `AlertCounts`, what `top` shows in its header: the firing and pending alerts, followed
through StreamAlerts next to the snapshot stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from metricsmesh.v1 import aggregator_pb2_grpc, alerts_pb2
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mesh_common.addresses import HostPort
from mesh_common.alert_json import alert_json, alert_list_body, alert_order
from mesh_common.auth_client import bearer_interceptors
from mesh_common.severity import SEVERITY_WORDS, Severity, severity_of
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel
from mesh_common.wire_time import to_seconds
from metricsmesh_cli.client import describe_rpc_error
from metricsmesh_cli.render import format_duration

STATE_STYLES: dict[int, tuple[str, str]] = {
    alerts_pb2.ALERT_STATE_FIRING: ("firing", "bold red"),
    alerts_pb2.ALERT_STATE_PENDING: ("pending", "yellow"),
    alerts_pb2.ALERT_STATE_RESOLVED: ("resolved", "green"),
    alerts_pb2.ALERT_STATE_INACTIVE: ("inactive", "dim"),
}


def severity_text(word: str) -> Text:
    """The severity word in its colour (an unknown word plain)."""
    return Text(
        word, style=SEVERITY_STYLES.get(Severity(word), "") if word in SEVERITY_WORDS else ""
    )


SEVERITY_STYLES = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
}
SUMMARY_WIDTH = 70


async def fetch_alerts(
    target: HostPort,
    *,
    include_resolved: bool = False,
    timeout: float = 5.0,
    tls: TlsSettings | None = None,
    token: str = "",
) -> alerts_pb2.ListAlertsResponse:
    """One ListAlerts from the aggregator at `target` (over TLS with `tls`, with bearer `token`).

    Raises grpc.aio.AioRpcError.
    """
    interceptors = bearer_interceptors(token)
    async with open_channel(target, tls=tls, interceptors=interceptors) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        return await stub.ListAlerts(
            alerts_pb2.ListAlertsRequest(include_resolved=include_resolved),
            timeout=timeout,
            wait_for_ready=False,
        )


def alerts_rest_body(
    response: alerts_pb2.ListAlertsResponse, *, now: float | None = None
) -> dict[str, Any]:
    """The alerts as the body of the gateway's `GET /api/v1/alerts/active`.

    `{"alerts": [...], "firing", "pending", "sequence", "timestamp"}`: each alert as the
    gateway writes it (`mesh_common.alert_json`), in the gateway's order (firing, then pending, then
    resolved), the counts of the alerts listed, the aggregator's last sequence and the time
    of the answer (ISO 8601 UTC, `now` or the current time).
    """
    alerts = sorted(response.alerts, key=alert_order)
    pairs = ((alert_json(alert), alert.state) for alert in alerts)
    return alert_list_body(pairs, response.last_sequence, time.time() if now is None else now)


def alerts_rest_json(response: alerts_pb2.ListAlertsResponse, *, now: float | None = None) -> str:
    """`alerts_rest_body()` as indented JSON text."""
    return json.dumps(alerts_rest_body(response, now=now), indent=2)


def alerts_json(response: alerts_pb2.ListAlertsResponse) -> str:
    """The ListAlertsResponse in protobuf's canonical JSON mapping (camelCase, enum names)."""
    return json_format.MessageToJson(response, indent=2)


def _value(alert: alerts_pb2.Alert) -> str:
    return alert.value_text or f"{alert.value:.4g}"


def alerts_table(alerts: list[alerts_pb2.Alert], *, now: float | None = None) -> Table | Text:
    """The alerts as a table (firing first, as the aggregator sends them)."""
    if not alerts:
        return Text("no alerts", style="green")
    now = time.time() if now is None else now
    table = Table(title=f"{len(alerts)} alert(s)", title_justify="left")
    for header in ("STATE", "SEVERITY", "ALERT", "SERVICE", "KIND", "VALUE", "SINCE", "SUMMARY"):
        table.add_column(header, justify="right" if header in ("VALUE", "SINCE") else "left")
    for alert in alerts:
        word, style = STATE_STYLES.get(alert.state, ("unknown", "dim"))
        since = alert.fired_time if alert.HasField("fired_time") else alert.active_time
        summary = alert.annotations.get("summary") or alert.annotations.get("description", "")
        if len(summary) > SUMMARY_WIDTH:
            summary = summary[: SUMMARY_WIDTH - 1] + "…"
        table.add_row(
            Text(word, style=style),
            severity_text(severity_of(alert)),
            alert.name,
            alert.service_name,
            alert.kind or "-",
            _value(alert),
            format_duration(now - to_seconds(since)),
            summary,
        )
    return table


def run_alerts(
    target: HostPort,
    *,
    output: str,
    console: Console,
    errors: Console,
    include_resolved: bool = False,
    timeout: float = 5.0,
    token: str = "",
    tls: TlsSettings | None = None,
) -> int:
    """Fetch and print the alerts; returns the exit status (1 when the call failed)."""
    try:
        response = asyncio.run(
            fetch_alerts(
                target, include_resolved=include_resolved, timeout=timeout, tls=tls, token=token
            )
        )
    except grpc.aio.AioRpcError as error:
        errors.print(f"metrics-mesh alerts: {describe_rpc_error(target, error, tls)}", markup=False)
        return 1
    if output in ("json", "protobuf-json"):
        text = alerts_rest_json(response) if output == "json" else alerts_json(response)
        console.file.write(text + "\n")
        console.file.flush()
    else:
        console.print(alerts_table(list(response.alerts)))
    return 0


@dataclass
class AlertCounts:
    """The aggregator's current alerts as `top` follows them (StreamAlerts from the start)."""

    states: dict[str, int] = field(default_factory=dict)
    """Alert id -> state, for the alerts not over."""
    known: bool = False
    """False until the stream answered (and when the aggregator serves no alerts)."""

    @property
    def firing(self) -> int:
        """How many alerts are firing."""
        return sum(state == alerts_pb2.ALERT_STATE_FIRING for state in self.states.values())

    @property
    def pending(self) -> int:
        """How many alerts are pending."""
        return sum(state == alerts_pb2.ALERT_STATE_PENDING for state in self.states.values())

    def apply(self, alert: alerts_pb2.Alert) -> None:
        """Take one alert change."""
        self.known = True
        if alert.state in (alerts_pb2.ALERT_STATE_FIRING, alerts_pb2.ALERT_STATE_PENDING):
            self.states[alert.id] = alert.state
        else:
            self.states.pop(alert.id, None)

    def line(self) -> Text:
        """`ALERTS 2 firing · 1 pending` in colour (or a dim dash while unknown)."""
        text = Text("ALERTS ", style="bold")
        if not self.known:
            return text.append("-", style="dim")
        firing, pending = self.firing, self.pending
        text.append(f"{firing} firing", style="bold red" if firing else "green")
        text.append(" · ")
        text.append(f"{pending} pending", style="yellow" if pending else "dim")
        return text

    async def follow(self, channel: grpc.aio.Channel) -> None:
        """Take the current alerts, then every change, until cancelled or the stream fails."""
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        try:
            listed = await stub.ListAlerts(alerts_pb2.ListAlertsRequest(), timeout=5.0)
            self.known = True
            for alert in listed.alerts:
                self.apply(alert)
            request = alerts_pb2.StreamAlertsRequest(after_sequence=listed.last_sequence)
            async for message in stub.StreamAlerts(request):
                self.apply(message.change.alert)
        except grpc.aio.AioRpcError:
            return  # no alerts on this aggregator, or it went away: the snapshots say so
