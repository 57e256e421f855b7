"""Our alert engine and Prometheus's own (`promtool test rules`) agree on when alerts fire.

The same input series (an error rate, one value a minute) goes through our engine and,
written as a Prometheus rule test whose expected firing alerts are the ones our engine
reports at every minute, through promtool. promtool passes only if Prometheus fires at
exactly the same minutes: `for`, `keep_firing_for` and both, with flapping in between.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from metricsmesh.v1 import snapshot_pb2

from aggregator._alerts.engine import Alert, State, evaluate
from aggregator._alerts.rules import Rule, check_rule

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package `prometheus`)"
)

SERIES = [0.0, 0.1, 0.1, 0.0, 0.1, 0.1, 0.1, 0.1, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1]
"""Error rates, one a minute: short spikes, a long one, flapping."""
T0 = 1_700_000_000.0


def firing_minutes(rule: Rule) -> list[bool]:
    """Whether our engine has the alert firing at each minute of SERIES."""
    alerts: dict[str, Alert] = {}
    firing = []
    for minute, rate in enumerate(SERIES):
        row = snapshot_pb2.ServiceRow(
            service_name="api",
            service_type="core",
            status=snapshot_pb2.SERVICE_STATUS_ACTIVE,
            window_events=1000,
            window_errors=round(rate * 1000),
        )
        alerts, _ = evaluate(
            [rule], snapshot_pb2.Snapshot(services=[row]), alerts, T0 + 60 * minute
        )
        alert = alerts.get(f"{rule.id}/api")
        firing.append(alert is not None and alert.state is State.FIRING)
    return firing


@pytest.mark.parametrize(("for_minutes", "keep_minutes"), [(0, 0), (2, 0), (0, 2), (2, 3), (3, 1)])
def test_promtool_fires_at_the_same_minutes_as_our_engine(
    tmp_path: Path, for_minutes: int, keep_minutes: int
) -> None:
    rule = check_rule(
        Rule(
            id="r",
            name="HighErrorRate",
            figure="error_rate",
            comparator=">",
            threshold=0.05,
            for_seconds=60.0 * for_minutes,
            keep_firing_for_seconds=60.0 * keep_minutes,
            severity="high",
        )
    )
    ours = firing_minutes(rule)
    assert any(ours), "the series must make the alert fire at least once"
    (tmp_path / "rules.yml").write_text(
        "groups:\n  - name: mesh\n    rules:\n      - alert: HighErrorRate\n"
        "        expr: error_rate > 0.05\n"
        f"        for: {for_minutes}m\n        keep_firing_for: {keep_minutes}m\n"
        "        labels:\n          severity: high\n"
    )
    values = " ".join(f"{rate:g}" for rate in SERIES)
    checks = "".join(
        f"      - eval_time: {minute}m\n        alertname: HighErrorRate\n"
        + (
            "        exp_alerts:\n          - exp_labels:\n"
            "              severity: high\n              service: api\n"
            if fires
            else "        exp_alerts: []\n"
        )
        for minute, fires in enumerate(ours)
    )
    (tmp_path / "test.yml").write_text(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n"
        f"    input_series:\n      - series: 'error_rate{{service=\"api\"}}'\n"
        f"        values: '{values}'\n    alert_rule_test:\n{checks}"
    )
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"ours: {ours}\n{done.stdout}\n{done.stderr}"
