"""Alerts in a real aggregator: the RPCs, the token, persistence across a restart, and a real
Prometheus Alertmanager that receives firing, then resolved, and tells a webhook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from metricsmesh.v1 import alerts_pb2

from aggregator import AggregatorServer, Registry, ServiceEntry
from aggregator._alerts.rules import rule_from_table
from aggregator._alerts.settings import SECTION as ALERTS_SECTION
from aggregator._alerts.settings import AlertSettings
from mesh_common.config import load_mesh_file
from mesh_common.errors import EXIT_USAGE, ConfigError
from mesh_common.registry import SERVICES
from mesh_common.wire_time import set_seconds
from tests.alerting_aggregator import ROUNDS, AlertingAggregator
from tests.eventually import eventually
from tests.gateway_mesh import ADMIN_TOKEN
from tests.ports import free_port

AUTH = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


def down_rule(**extra: Any) -> alerts_pb2.AlertRule:
    rule = alerts_pb2.AlertRule(
        name="ServiceDown", figure="status", comparator="!=", threshold_text="active",
        severity="critical", annotations={"summary": "{service} is {value}"},
    )  # fmt: skip
    for key, value in extra.items():
        setattr(rule, key, value)
    return rule


async def test_writes_need_the_token_and_a_bad_rule_names_its_field(
    alerting: AlertingAggregator,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alerting.stub.CreateAlertRule(alerts_pb2.CreateAlertRuleRequest(rule=down_rule()))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        wrong = (("authorization", "Bearer nope"),)
        await alerting.stub.CreateAlertRule(
            alerts_pb2.CreateAlertRuleRequest(rule=down_rule()), metadata=wrong
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    bad = down_rule(figure="cpu_usage")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alerting.stub.CreateAlertRule(
            alerts_pb2.CreateAlertRuleRequest(rule=bad), metadata=AUTH
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rule field 'figure'" in (caught.value.details() or "")
    rules = await alerting.stub.ListAlertRules(alerts_pb2.ListAlertRulesRequest())
    assert list(rules.rules) == []


def refused_field(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(field, description) of the one BadRequest field violation in the error's details."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailing metadata"
    assert status.code == code_pb2.INVALID_ARGUMENT and status.message == error.details()
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    [violation] = bad_request.field_violations
    return violation.field, violation.description


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"figure": "cpu_usage"}, "figure"),
        ({"comparator": "~"}, "comparator"),
        ({"figure": "error_rate", "comparator": ">", "threshold_text": "high"}, "threshold"),
        (
            {"figure": "error_rate", "comparator": ">", "threshold_text": "", "threshold": 0.05}
            | {"clear_threshold": 2.0},
            "clear_threshold",
        ),
        ({"for_duration": -5.0}, "for_seconds"),
        ({"keep_firing_for": 90_000.0}, "keep_firing_for_seconds"),
        ({"severity": "meh"}, "severity"),
        ({"severity": "info", "severity_level": alerts_pb2.ALERT_SEVERITY_HIGH}, "severity"),
        ({"service_names": ["nosuch"]}, "service_names"),
        ({"service_types": ["quantum"]}, "service_types"),
        ({"labels": {"bad-key": "x"}}, "labels"),
        ({"name": ""}, "name"),
    ],
)
async def test_a_refused_rule_names_its_field_in_the_status_details(
    alerting: AlertingAggregator, changes: dict[str, Any], field: str
) -> None:
    bad = down_rule()
    for key, value in changes.items():
        if key in ("for_duration", "keep_firing_for"):
            set_seconds(getattr(bad, key), value)
        elif isinstance(value, list):
            getattr(bad, key).extend(value)
        elif isinstance(value, dict):
            getattr(bad, key).update(value)
        else:
            setattr(bad, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alerting.stub.CreateAlertRule(
            alerts_pb2.CreateAlertRuleRequest(rule=bad), metadata=AUTH
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    named, description = refused_field(caught.value)
    assert named == field
    assert caught.value.details() == f"rule field {field!r}: {description}"


@pytest.mark.parametrize(
    ("word", "level", "expected"),
    [
        ("critical", alerts_pb2.ALERT_SEVERITY_UNSPECIFIED, alerts_pb2.ALERT_SEVERITY_CRITICAL),
        ("", alerts_pb2.ALERT_SEVERITY_HIGH, alerts_pb2.ALERT_SEVERITY_HIGH),
        ("", alerts_pb2.ALERT_SEVERITY_UNSPECIFIED, alerts_pb2.ALERT_SEVERITY_WARNING),
    ],
)
async def test_a_rules_severity_is_its_level_whichever_way_a_client_gave_it(
    alerting: AlertingAggregator, word: str, level: int, expected: int
) -> None:
    rule = down_rule()
    rule.severity = word
    rule.severity_level = level  # type: ignore[assignment]
    created = await alerting.stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(rule=rule), metadata=AUTH
    )
    assert created.rule.severity_level == expected
    words = {2: "warning", 3: "high", 4: "critical"}
    assert created.rule.severity == words[expected]  # the deprecated word, for older clients
    (listed,) = (await alerting.stub.ListAlertRules(alerts_pb2.ListAlertRulesRequest())).rules
    assert listed.severity_level == expected


async def test_a_second_rule_of_the_same_name_is_refused_naming_name(
    alerting: AlertingAggregator,
) -> None:
    await alerting.stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(rule=down_rule()), metadata=AUTH
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alerting.stub.CreateAlertRule(
            alerts_pb2.CreateAlertRuleRequest(rule=down_rule()), metadata=AUTH
        )
    assert refused_field(caught.value) == ("name", "a rule called 'ServiceDown' exists already")


async def test_a_rule_fires_when_its_service_goes_down_and_resolves_when_it_returns(
    alerting: AlertingAggregator,
) -> None:
    created = await alerting.stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(rule=down_rule()), metadata=AUTH
    )
    assert created.rule.id and created.rule.source == "api"
    changes = alerting.stub.StreamAlerts(alerts_pb2.StreamAlertsRequest())
    await alerting.stop_agent()
    (alert,) = await eventually(alerting.firing, what="ServiceDown firing")
    assert (alert.service_name, alert.severity, alert.value_text) == ("api", "critical", "inactive")
    assert alert.severity_level == alerts_pb2.ALERT_SEVERITY_CRITICAL
    assert alert.annotations["summary"] == "api is inactive"
    assert alert.labels["alertname"] == "ServiceDown" and alert.labels["service"] == "api"
    await alerting.start_agent()

    async def resolved() -> alerts_pb2.Alert | None:
        found = (
            await alerting.stub.ListAlerts(alerts_pb2.ListAlertsRequest(include_resolved=True))
        ).alerts
        done = [a for a in found if a.state == alerts_pb2.ALERT_STATE_RESOLVED]
        return done[0] if done else None

    assert (await eventually(resolved, what="ServiceDown resolved")).resolved_by == ""
    states = []
    async for response in changes:
        states.append(response.change.alert.state)
        if response.change.alert.state == alerts_pb2.ALERT_STATE_RESOLVED:
            break
    changes.cancel()
    assert states == [alerts_pb2.ALERT_STATE_FIRING, alerts_pb2.ALERT_STATE_RESOLVED]


async def test_a_manual_resolve_is_recorded_and_silences_the_alert(
    alerting: AlertingAggregator,
) -> None:
    await alerting.stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(rule=down_rule()), metadata=AUTH
    )
    await alerting.stop_agent()
    (alert,) = await eventually(alerting.firing, what="ServiceDown firing")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alerting.stub.ResolveAlert(alerts_pb2.ResolveAlertRequest(id=alert.id))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    done = await alerting.stub.ResolveAlert(
        alerts_pb2.ResolveAlertRequest(id=alert.id, resolved_by="ops"), metadata=AUTH
    )
    assert done.alert.state == alerts_pb2.ALERT_STATE_RESOLVED and done.alert.resolved_by == "ops"
    rounds = alerting.server.rounds if alerting.server else 0
    await eventually(lambda: alerting.server is not None and alerting.server.rounds >= rounds + 5)
    assert await alerting.firing() is None  # still down, but silenced until it clears


async def test_rules_and_firing_alerts_survive_an_aggregator_restart(
    alerting: AlertingAggregator,
) -> None:
    created = await alerting.stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(rule=down_rule()), metadata=AUTH
    )
    await alerting.stop_agent()
    (before,) = await eventually(alerting.firing, what="ServiceDown firing")
    await alerting.stop_aggregator()
    await alerting.start_aggregator()
    rules = await alerting.stub.ListAlertRules(alerts_pb2.ListAlertRulesRequest())
    assert [rule.id for rule in rules.rules] == [created.rule.id]
    (after,) = await eventually(alerting.firing, what="ServiceDown still firing")
    assert after.fired_time == before.fired_time  # the same alert: not fired anew
    deleted = await alerting.stub.DeleteAlertRule(
        alerts_pb2.DeleteAlertRuleRequest(id=created.rule.id), metadata=AUTH
    )
    assert deleted.rule.name == "ServiceDown"
    assert (
        list((await alerting.stub.ListAlertRules(alerts_pb2.ListAlertRulesRequest())).rules) == []
    )


# ------------------------------------------- rules on services or types the registry lacks


UNKNOWN_SERVICE = {
    "name": "NoSuchDown", "figure": "status", "comparator": "!=", "threshold": "active",
    "services": ["nosuch"],
}  # fmt: skip
UNKNOWN_TYPE = {
    "name": "QuantumSlow", "figure": "latency_p99_ms", "comparator": ">", "threshold": 2000,
    "types": ["quantum"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"service_names": ["api", "nosuch"]}, "service_names", "unknown service name 'nosuch'"),
        ({"service_types": ["quantum", "core"]}, "service_types", "unknown service type 'quantum'"),
        (
            {"service_names": ["zz", "nosuch"]},
            "service_names",
            "unknown service names 'nosuch', 'zz'",
        ),
    ],
)
async def test_a_rule_on_an_unknown_service_or_type_is_invalid_argument_naming_them(
    alerting: AlertingAggregator, extra: dict[str, list[str]], field: str, words: str
) -> None:
    bad = down_rule()
    for key, values in extra.items():
        getattr(bad, key).extend(values)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alerting.stub.CreateAlertRule(
            alerts_pb2.CreateAlertRuleRequest(rule=bad), metadata=AUTH
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert details.startswith(f"rule field '{field}': {words}; known: ")
    known = "core" if field == "service_types" else "api"
    assert details.endswith(f"known: {known}")
    rules = await alerting.stub.ListAlertRules(alerts_pb2.ListAlertRulesRequest())
    assert list(rules.rules) == []
    # A refused rule takes no number: the next good one is the first.
    good = down_rule(name="ApiDown")
    good.service_names.append("api")
    good.service_types.append("core")
    created = await alerting.stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(rule=good), metadata=AUTH
    )
    assert created.rule.id == "rule-1" and list(created.rule.service_names) == ["api"]


@pytest.mark.parametrize(
    ("table", "key", "words", "known"),
    [
        (UNKNOWN_SERVICE, "services", "unknown service name 'nosuch'", "api"),
        (UNKNOWN_TYPE, "types", "unknown service type 'quantum'", "core"),
    ],
)
def test_a_configured_rule_on_an_unknown_service_or_type_stops_the_aggregator(
    tmp_path: Path, table: dict[str, Any], key: str, words: str, known: str
) -> None:
    registry = Registry([ServiceEntry("api", "127.0.0.1", 8000, 18000, "core")])
    alerts = AlertSettings(state_dir=str(tmp_path), rules=(rule_from_table(0, table),))
    with pytest.raises(ConfigError) as caught:
        AggregatorServer(registry, ROUNDS, alerts=alerts)
    assert str(caught.value) == (
        f"[[alerts.rules]] 0 ({table['name']!r}): rule field {key!r}: {words}; known: {known}"
    )


def test_the_config_file_reader_refuses_such_a_rule_given_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(
        '[[services]]\nname = "api"\nport = 8000\ntype = "core"\n\n'
        '[[alerts.rules]]\nname = "Fine"\nfigure = "error_rate"\ncomparator = ">"\n'
        'threshold = 0.1\nservices = ["api"]\ntypes = ["core"]\n\n'
        '[[alerts.rules]]\nname = "Typo"\nfigure = "error_rate"\ncomparator = ">"\n'
        'threshold = 0.1\nservices = ["apii"]\n',
        encoding="utf-8",
    )
    mesh = load_mesh_file(path, environ={})
    assert len(mesh.read(ALERTS_SECTION).rules) == 2  # without the registry: unchecked
    registry = mesh.read(SERVICES)
    with pytest.raises(ConfigError) as caught:
        mesh.read(ALERTS_SECTION, registry=registry)
    assert str(caught.value) == (
        f"{path}: [[alerts.rules]] 1 ('Typo'): rule field 'services': "
        "unknown service name 'apii'; known: api"
    )


def test_the_aggregator_exits_2_naming_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(
        f'[alerts]\nstate_dir = "{tmp_path / "state"}"\n\n'
        '[[alerts.rules]]\nname = "QuantumSlow"\nfigure = "latency_p99_ms"\n'
        'comparator = ">"\nthreshold = 2000\ntypes = ["quantum"]\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_USAGE, result.stderr
    assert result.stderr.startswith("aggregator: ")
    assert (
        "[[alerts.rules]] 0 ('QuantumSlow'): rule field 'types': unknown service type "
        "'quantum'; known: ai, analysis, core, data"
    ) in result.stderr


# ---------------------------------------------------------------- a real Alertmanager


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("Alertmanager is not installed (Debian package `prometheus-alertmanager`)")
    url, _ = webhook
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: hook\n  group_by: ['alertname', 'service']\n  group_wait: 0s\n"
        "  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {url}\n"
        "        send_resolved: true\n"
    )
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)
    log.close()


async def test_a_real_alertmanager_gets_firing_then_resolved_and_tells_the_webhook(
    tmp_path: Path, alertmanager: str, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    async with httpx.AsyncClient(base_url=alertmanager, timeout=5) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/-/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout=30, what="Alertmanager to be ready")
        alerting = AlertingAggregator(
            tmp_path / "state",
            alertmanagers=(alertmanager,),
            resend_interval_seconds=1.0,
            dashboard_url="http://127.0.0.1:8000/",
        )
        await alerting.start_agent()
        await alerting.start_aggregator()
        try:
            await alerting.stub.CreateAlertRule(alerts_pb2.CreateAlertRuleRequest(rule=down_rule()))
            await alerting.stop_agent()

            async def active_in_alertmanager() -> list[dict[str, Any]] | None:
                found = (await client.get("/api/v2/alerts")).json()
                return [a for a in found if a["status"]["state"] == "active"] or None

            (held,) = await eventually(active_in_alertmanager, timeout=30, what="the alert in AM")
            assert held["labels"]["alertname"] == "ServiceDown"
            assert held["labels"]["service"] == "api" and held["labels"]["severity"] == "critical"
            assert held["generatorURL"] == "http://127.0.0.1:8000/"
            _, received = webhook
            await eventually(
                lambda: any(n["status"] == "firing" for n in received), timeout=30,
                what="the webhook to hear it fire",
            )  # fmt: skip
            await alerting.start_agent()
            await eventually(
                lambda: any(n["status"] == "resolved" for n in received), timeout=30,
                what="the webhook to hear it resolve",
            )  # fmt: skip
            resolved = next(n for n in received if n["status"] == "resolved")
            assert resolved["alerts"][0]["labels"]["service"] == "api"
        finally:
            await alerting.stop_aggregator()
            await alerting.stop_agent()
