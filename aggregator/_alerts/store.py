"""The alert store: rules created at run time and alert states, in one sqlite file.

Rules are stored as their AlertRule message (serialized), alerts as JSON of their fields, so
a restart neither forgets a `for` timer nor re-notifies a firing alert. Every write is one
transaction. One connection serves every call, one call at a time (the manager calls from
worker threads): `close()` waits for a call in flight, so a shutdown during a save neither
cuts the save short nor frees the connection under it; later calls are a AlertStoreError. A store
without a path lives in memory (nothing survives a restart).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from metricsmesh.v1 import alerts_pb2

from aggregator._alerts.engine import Alert, State
from aggregator._alerts.rules import Rule, rule_from_proto, rule_to_proto
from aggregator._errors import AlertStoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (id TEXT PRIMARY KEY, message BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, fields TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class AlertStore:
    """Run-time rules and alert states in the sqlite file at `path` (created on first use)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                ":memory:" if path is None else path, timeout=5.0, check_same_thread=False
            )
            with self._connection() as connection:
                connection.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise AlertStoreError(f"cannot open the alert store {path}: {error}") from error

    def close(self) -> None:
        """Close the connection once the call in flight (if any) is done; a second is harmless."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def rules(self) -> list[Rule]:
        """The rules created at run time, in creation order."""
        with self._connection() as connection:
            rows = connection.execute("SELECT id, message FROM rules ORDER BY rowid").fetchall()
        return [
            rule_from_proto(alerts_pb2.AlertRule.FromString(message), rule_id=rule_id, source="api")
            for rule_id, message in rows
        ]

    def next_rule_number(self) -> int:
        """A number for the next rule id, never used before in this store."""
        with self._connection() as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = 'rules'").fetchone()
            number = int(row[0]) + 1 if row else 1
            connection.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('rules', ?)", (str(number),)
            )
        return number

    def add_rule(self, rule: Rule) -> None:
        """Keep a rule created at run time."""
        with self._connection() as connection:
            connection.execute(
                "INSERT INTO rules (id, message) VALUES (?, ?)",
                (rule.id, rule_to_proto(rule).SerializeToString()),
            )

    def delete_rule(self, rule_id: str) -> None:
        """Forget a rule created at run time."""
        with self._connection() as connection:
            connection.execute("DELETE FROM rules WHERE id = ?", (rule_id,))

    def alerts(self) -> dict[str, Alert]:
        """The alerts as last saved."""
        with self._connection() as connection:
            rows = connection.execute("SELECT id, fields FROM alerts").fetchall()
        return {alert_id: _alert(json.loads(fields)) for alert_id, fields in rows}

    def save_alerts(self, alerts: Iterable[Alert]) -> None:
        """Replace the saved alerts with `alerts`."""
        rows = [(alert.id, json.dumps(_fields(alert))) for alert in alerts]
        with self._connection() as connection:
            connection.execute("DELETE FROM alerts")
            connection.executemany("INSERT INTO alerts (id, fields) VALUES (?, ?)", rows)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection in one transaction, one call at a time; AlertStoreError once closed."""
        with self._lock:
            if self._closed:
                raise AlertStoreError(f"the alert store {self.path or '(in memory)'} is closed")
            try:
                with self._db as connection:
                    yield connection
            except sqlite3.Error as error:
                raise AlertStoreError(
                    f"the alert store {self.path or '(in memory)'} failed: {error}"
                ) from error


def _fields(alert: Alert) -> dict[str, object]:
    fields = asdict(alert)
    fields["state"] = alert.state.value
    fields["labels"] = dict(alert.labels)
    fields["annotations"] = dict(alert.annotations)
    return fields


def _alert(fields: dict[str, object]) -> Alert:
    fields = dict(fields)
    fields["state"] = State(fields["state"])
    return Alert(**fields)  # type: ignore[arg-type]
