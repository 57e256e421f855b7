"""The `[alerts]` table: rules from the config file, where states are kept, and delivery.

[alerts]
state_dir = "/var/lib/metrics-mesh"        # rules created at run time and alert states
alertmanagers = ["http://127.0.0.1:9093"]  # Alertmanager API v2 base URLs
resend_interval_seconds = 60
webhook_url = ""                           # gets Alertmanager's webhook payload too
admin_token = ""                           # bearer token the write RPCs require
dashboard_url = "http://127.0.0.1:8000/"   # generatorURL of every alert

[[alerts.rules]]
name = "ServiceDown"
figure = "status"
comparator = "!="
threshold = "active"
for_seconds = 5
severity = "critical"
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator._alerts.rules import (
    TABLE_SELECTORS,
    Rule,
    check_selection,
    rule_from_table,
)
from aggregator._errors import RuleError
from mesh_common.config import Key, Section, setting
from mesh_common.errors import ConfigError
from mesh_common.registry import Registry


def default_state_dir() -> str:
    """`$XDG_STATE_HOME/metrics-mesh`, else `~/.local/state/metrics-mesh`."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "metrics-mesh")


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """The `[alerts]` table (its `rules` are read into `rules`)."""

    state_dir: str = setting("", "where run-time rules and alert states are kept (sqlite)")
    alertmanagers: tuple[str, ...] = setting((), "Alertmanager base URLs (API v2)")
    resend_interval_seconds: float = setting(60.0, "re-send firing alerts this often")
    webhook_url: str = setting("", "a plain webhook that gets Alertmanager's webhook payload")
    admin_token: str = setting("", "bearer token required by the write RPCs ('' = none)")
    dashboard_url: str = setting("http://127.0.0.1:8000/", "the generatorURL of every alert")
    rules: tuple[Rule, ...] = ()
    """The `[[alerts.rules]]` tables, read-only at run time."""

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key."""
        if not math.isfinite(self.resend_interval_seconds) or self.resend_interval_seconds <= 0:
            raise ConfigError(
                f"resend_interval_seconds: {self.resend_interval_seconds} must be > 0"
            )
        for url in (*self.alertmanagers, *([self.webhook_url] if self.webhook_url else [])):
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{url!r} is not an http(s) URL")
        names = [rule.name for rule in self.rules]
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise ConfigError(f"rules: two rules are called {duplicate!r}")

    @property
    def state_path(self) -> Path:
        """The sqlite file of run-time rules and alert states."""
        return Path(self.state_dir or default_state_dir()) / "alerts.sqlite3"


IN_MEMORY = AlertSettings()
"""Alerts without persistence or delivery (an AggregatorServer built without settings)."""


def check_configured_rules(rules: Iterable[Rule], registry: Registry) -> None:
    """ConfigError naming the first `[[alerts.rules]]` table that selects an unknown service.

    The message names the table (its index and the rule's name), the key (`services` or
    `types`), the unknown names or types and the known ones: such a rule would never fire.
    """
    for index, rule in enumerate(rules):
        try:
            check_selection(rule, registry, TABLE_SELECTORS)
        except RuleError as error:
            raise ConfigError(f"[[alerts.rules]] {index} ({rule.name!r}): {error}") from error


_TABLE = Section("alerts", AlertSettings, "alert rules and their delivery", derived=("rules",))


class AlertsSection:
    """The declaration of the `[alerts]` table: its keys, and its `[[alerts.rules]]` array."""

    table = "alerts"
    summary = _TABLE.summary
    reads_registry = True
    """`parse` takes the registry (`registry=`) to check the rules' services and types."""

    def parse(
        self,
        value: object,
        environ: Mapping[str, str],
        *,
        registry: Registry | None = None,
        **derived: Any,
    ) -> AlertSettings:
        """The settings of the table; ConfigError naming the rule and field when one is bad.

        With `registry` (the mesh file's `[[services]]`), a rule selecting a service name or
        type that is not in it is an error too (`check_configured_rules`).
        """
        table = dict(value) if isinstance(value, Mapping) else value
        raw_rules: Any = table.pop("rules", []) if isinstance(table, dict) else []
        if not isinstance(raw_rules, list):
            raise ConfigError("[alerts] rules must be an array of tables ([[alerts.rules]])")
        rules = []
        for index, item in enumerate(raw_rules):
            try:
                rules.append(rule_from_table(index, item))
            except RuleError as error:
                raise ConfigError(f"[[alerts.rules]] {index}: {error}") from error
        if registry is not None:
            check_configured_rules(rules, registry)
        return _TABLE.parse(table, environ, rules=tuple(rules))

    def keys(self) -> tuple[Key, ...]:
        """The table's keys (the rules' keys are in aggregator._alerts.rules)."""
        return _TABLE.keys()

    def help_text(self) -> str:
        """The keys and their environment variables, for `--help`."""
        return _TABLE.help_text()


SECTION = AlertsSection()
"""The `[alerts]` table's declaration."""
