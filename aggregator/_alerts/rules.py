"""An alert rule: one figure of the selected services (or kinds), a comparison and timings.

Rules come from the `[[alerts.rules]]` tables of the mesh file (read-only at run time) and
from CreateAlertRule (kept in the store). Both are checked here, and a bad rule is refused
with a `RuleError` naming the field and the reason. `check_selection` checks a rule's service
names and types against the registry: an unknown one would silently select nothing, so it is
refused naming the unknown and the known ones (the mesh's one rule for unknown names).

**Pushed series.** A rule on a row figure (no kinds) also watches the series pushed to the mesh
under that name (seed 003's `cpu_usage_percent{host="server01"}`), one alert per label set,
beside the rows: the name `cpu_usage_percent` is both the agents' process CPU (a row figure)
and whatever was pushed under it, and a rule on it watches both (its service selectors apply to
a pushed series' service, "" for seed 003's, and type `pushed`). With `matchers`, label matchers
in PromQL syntax (`{host=~"server0[12]"}`, `{}` for every label set), a rule watches only the
pushed series of its figure's name that they select, and the figure may be any metric name.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from metricsmesh.v1 import alerts_pb2

from aggregator._errors import RuleError, SelectorError
from mesh_common.bounded import quote
from mesh_common.figures import KIND_FIGURES, ROW_FIGURES
from mesh_common.filters import ServiceFilter, unknown_message
from mesh_common.registry import Registry
from mesh_common.severity import DEFAULT_SEVERITY, SEVERITY_WORDS, Severity, severity_of, to_wire
from mesh_common.status import STATUS_WORDS
from mesh_common.wire_time import set_seconds, to_seconds

if TYPE_CHECKING:
    from aggregator._history.selector import Selector

COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
TEXT_FIGURES = frozenset({"status"})
"""Figures compared as text (`status` with active, inactive, error)."""
_NUMERIC_ROW = frozenset(figure.name for figure in ROW_FIGURES if figure.json_type in (int, float))
_NUMERIC_KIND = frozenset(
    figure.name for figure in KIND_FIGURES if figure.json_type in (int, float)
)
ROW_RULE_FIGURES = tuple(sorted(_NUMERIC_ROW | TEXT_FIGURES))
"""Figures a rule on services may watch."""
KIND_RULE_FIGURES = tuple(sorted(_NUMERIC_KIND))
"""Figures a rule on kinds may watch."""
MAX_RULE_NAME = 200
_SOURCES = ("config", "api")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
MESSAGE_SELECTORS = ("service_names", "service_types")
"""The selector fields of an AlertRule message (and of the gateway's native form)."""
TABLE_SELECTORS = ("services", "types")
"""The selector keys of an `[[alerts.rules]]` table."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A checked rule (times in seconds)."""

    id: str
    name: str
    figure: str
    comparator: str
    threshold: float | str
    clear_threshold: float | None = None
    for_seconds: float = 0.0
    keep_firing_for_seconds: float = 0.0
    severity: str = DEFAULT_SEVERITY
    service_names: frozenset[str] = frozenset()
    service_types: frozenset[str] = frozenset()
    kinds: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    source: str = "api"
    matchers: str = ""
    """Label matchers of the pushed series watched (`{host="server01"}`); "" for rows too."""
    selector: Selector | None = field(default=None, compare=False, repr=False)
    """The figure and `matchers` parsed (`check_rule` sets it)."""

    def watches(self, labels: Iterable[tuple[str, str]]) -> bool:
        """Whether the rule watches the pushed series of its figure with `labels`."""
        selector = self.selector
        return selector is None or selector.matches({**dict(labels), "__name__": self.figure})

    def holds(self, value: float | str, *, firing: bool) -> bool:
        """Whether the condition holds for `value`.

        A firing alert with a clear threshold keeps holding until the value crosses that
        threshold instead (hysteresis).
        """
        compare = COMPARATORS[self.comparator]
        if firing and self.clear_threshold is not None and isinstance(value, int | float):
            return bool(compare(value, self.clear_threshold))
        return bool(compare(value, self.threshold))

    def selects(self, service_name: str, service_type: str) -> bool:
        """Whether the rule watches this service."""
        return (not self.service_names or service_name in self.service_names) and (
            not self.service_types or service_type in self.service_types
        )


def check_rule(rule: Rule) -> Rule:
    """`rule` if it makes sense, else RuleError naming the field."""
    if not rule.name.strip() or len(rule.name) > MAX_RULE_NAME:
        raise RuleError("name", f"must be a non-empty name of at most {MAX_RULE_NAME} characters")
    if rule.matchers:
        return _check_rest(_with_selector(rule))
    return _check_rest(rule)


def _with_selector(rule: Rule) -> Rule:
    """`rule` with its matchers parsed; RuleError naming `matchers` or `kinds`."""
    if rule.kinds:
        raise RuleError("kinds", "a rule on pushed series (with matchers) has no kinds")
    if not _METRIC_NAME.fullmatch(rule.figure):
        raise RuleError("figure", f"{quote(rule.figure, 60)} is not a metric name")
    if not rule.matchers.lstrip().startswith("{"):
        raise RuleError("matchers", 'must be label matchers in braces, e.g. {host="server01"}')
    # Imported here: the history package imports the alert settings, which import this module.
    from aggregator._history.selector import parse_selector

    try:
        selector = parse_selector(rule.figure + rule.matchers, pushed={rule.figure})
    except SelectorError as error:
        raise RuleError("matchers", str(error)) from None
    return replace(rule, selector=selector)


def _check_rest(rule: Rule) -> Rule:
    """`check_rule`'s checks after the name's (`rule.selector` is set for pushed series)."""
    known = KIND_RULE_FIGURES if rule.kinds else ROW_RULE_FIGURES
    if rule.selector is None and rule.figure not in known:
        where = "of a kind" if rule.kinds else "of a service"
        raise RuleError(
            "figure", f"{rule.figure!r} is not a figure {where}; known: {', '.join(known)}"
        )
    if rule.comparator not in COMPARATORS:
        raise RuleError("comparator", f"{rule.comparator!r} is not one of {' '.join(COMPARATORS)}")
    if rule.selector is None and rule.figure in TEXT_FIGURES:
        if rule.threshold not in STATUS_WORDS:
            raise RuleError(
                "threshold", f"status is compared with one of {', '.join(STATUS_WORDS)}"
            )
        if rule.comparator not in ("==", "!="):
            raise RuleError("comparator", "status is compared with == or !=")
        if rule.clear_threshold is not None:
            raise RuleError("clear_threshold", "a status rule has no clear threshold")
    elif not isinstance(rule.threshold, float) or not math.isfinite(rule.threshold):
        raise RuleError("threshold", f"must be a finite number, got {rule.threshold!r}")
    if rule.clear_threshold is not None and not math.isfinite(rule.clear_threshold):
        raise RuleError("clear_threshold", "must be a finite number")
    if rule.clear_threshold is not None and isinstance(rule.threshold, float):
        # The clear threshold must lie on the resolving side of the threshold (or on it).
        fires = COMPARATORS[rule.comparator](rule.clear_threshold, rule.threshold)
        if rule.comparator in ("==", "!=") or (fires and rule.clear_threshold != rule.threshold):
            raise RuleError(
                "clear_threshold",
                f"must be on the resolving side of threshold {rule.threshold:g} "
                f"(for {rule.comparator} a value that does not fire)",
            )
    for name, seconds in (
        ("for_seconds", rule.for_seconds),
        ("keep_firing_for_seconds", rule.keep_firing_for_seconds),
    ):
        if not math.isfinite(seconds) or not 0 <= seconds <= 86400:
            raise RuleError(name, f"must be 0..86400 seconds, got {seconds!r}")
    if rule.severity not in SEVERITY_WORDS:
        raise RuleError(
            "severity", f"{quote(rule.severity)} is not one of {', '.join(SEVERITY_WORDS)}"
        )
    for name, mapping in (("labels", rule.labels), ("annotations", rule.annotations)):
        for key, value in mapping.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or len(key) > 100:
                raise RuleError(name, f"{key[:40]!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*)")
            if len(value) > 2000:
                raise RuleError(name, f"the value of {key!r} is longer than 2000 characters")
    if rule.source not in _SOURCES:
        raise RuleError("source", f"must be one of {', '.join(_SOURCES)}")
    return rule


def check_selection(
    rule: Rule, registry: Registry, selectors: tuple[str, str] = MESSAGE_SELECTORS
) -> Rule:
    """`rule` if every service name and type it selects is in `registry`, else RuleError.

    The error names the field (`selectors`: how the rule's source spells the names' and the
    types' field), every unknown name or type, and the known ones, as the gRPC filters do
    (`aggregator._convert.Projection`): a name the registry does not have is never read as
    "nothing matches".
    """
    wanted = ServiceFilter.of(rule.service_names, rule.service_types)
    names_field, types_field = selectors
    unknown = wanted.unknown_names(registry.names)
    if unknown:
        raise RuleError(names_field, unknown_message("service name", unknown, registry.names))
    unknown_types = sorted(wanted.types - registry.types)
    if unknown_types:
        raise RuleError(types_field, unknown_message("service type", unknown_types, registry.types))
    return rule


def rule_from_proto(message: alerts_pb2.AlertRule, *, rule_id: str, source: str) -> Rule:
    """A checked rule from an AlertRule message (its own id and source are ignored)."""
    text = message.figure in TEXT_FIGURES and not message.matchers
    if not text and message.threshold_text and message.figure in (_NUMERIC_ROW | _NUMERIC_KIND):
        raise RuleError(
            "threshold",
            f"{message.figure!r} is compared with a number, not {message.threshold_text[:40]!r}",
        )
    return check_rule(
        Rule(
            id=rule_id,
            name=message.name,
            figure=message.figure,
            comparator=message.comparator,
            threshold=message.threshold_text if text else float(message.threshold),
            clear_threshold=(
                message.clear_threshold if message.HasField("clear_threshold") else None
            ),
            for_seconds=to_seconds(message.for_duration),
            keep_firing_for_seconds=to_seconds(message.keep_firing_for),
            severity=_proto_severity(message),
            service_names=frozenset(message.service_names),
            service_types=frozenset(message.service_types),
            kinds=tuple(dict.fromkeys(message.kinds)),
            labels=dict(message.labels),
            annotations=dict(message.annotations),
            source=source,
            matchers=message.matchers,
        )
    )


def _proto_severity(message: alerts_pb2.AlertRule) -> str:
    """The rule's severity word; RuleError when its level and its (deprecated) word disagree."""
    word = severity_of(message)
    if message.severity and message.severity != word:
        raise RuleError(
            "severity",
            f"severity {quote(message.severity)} disagrees with severity_level {word!r}",
        )
    return word


def rule_to_proto(rule: Rule) -> alerts_pb2.AlertRule:
    """The AlertRule message of a rule."""
    message = alerts_pb2.AlertRule(
        id=rule.id,
        name=rule.name,
        figure=rule.figure,
        comparator=rule.comparator,
        severity=rule.severity,
        severity_level=to_wire(Severity(rule.severity)),
        service_names=sorted(rule.service_names),
        service_types=sorted(rule.service_types),
        kinds=list(rule.kinds),
        labels=dict(rule.labels),
        annotations=dict(rule.annotations),
        source=rule.source,
        matchers=rule.matchers,
    )
    if isinstance(rule.threshold, str):
        message.threshold_text = rule.threshold
    else:
        message.threshold = rule.threshold
    if rule.clear_threshold is not None:
        message.clear_threshold = rule.clear_threshold
    set_seconds(message.for_duration, rule.for_seconds)
    set_seconds(message.keep_firing_for, rule.keep_firing_for_seconds)
    return message


_CONFIG_KEYS = (
    "name", "figure", "comparator", "threshold", "clear_threshold", "for_seconds",
    "keep_firing_for_seconds", "severity", "services", "types", "kinds", "labels",
    "annotations", "matchers",
)  # fmt: skip


def rule_from_table(index: int, table: object) -> Rule:
    """A checked rule from one `[[alerts.rules]]` table; RuleError names the field."""
    if not isinstance(table, Mapping):
        raise RuleError(f"rules[{index}]", "must be a table")
    unknown = [key for key in table if key not in _CONFIG_KEYS]
    if unknown:
        raise RuleError(unknown[0], f"unknown key; allowed: {', '.join(_CONFIG_KEYS)}")
    name = _get(table, "name", str, "")
    figure = _get(table, "figure", str, "")
    matchers = _get(table, "matchers", str, "")
    threshold: Any = table.get("threshold")
    if figure not in TEXT_FIGURES or matchers:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise RuleError("threshold", f"must be a number, got {threshold!r}")
        threshold = float(threshold)
    elif not isinstance(threshold, str):
        raise RuleError("threshold", f"status is compared with one of {', '.join(STATUS_WORDS)}")
    clear = table.get("clear_threshold")
    if clear is not None and (isinstance(clear, bool) or not isinstance(clear, int | float)):
        raise RuleError("clear_threshold", f"must be a number, got {clear!r}")
    return check_rule(
        Rule(
            id=f"config-{index + 1}",
            name=name,
            figure=figure,
            comparator=_get(table, "comparator", str, ""),
            threshold=threshold,
            clear_threshold=None if clear is None else float(clear),
            for_seconds=float(_get(table, "for_seconds", (int, float), 0.0)),
            keep_firing_for_seconds=float(
                _get(table, "keep_firing_for_seconds", (int, float), 0.0)
            ),
            severity=_get(table, "severity", str, DEFAULT_SEVERITY.value),
            service_names=frozenset(_strings(table, "services")),
            service_types=frozenset(_strings(table, "types")),
            kinds=tuple(_strings(table, "kinds")),
            labels=_mapping(table, "labels"),
            annotations=_mapping(table, "annotations"),
            source="config",
            matchers=matchers,
        )
    )


def _get(table: Mapping[str, Any], key: str, expected: Any, default: Any) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, expected):
        raise RuleError(key, f"has the wrong type: {value!r}")
    return value


def _strings(table: Mapping[str, Any], key: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RuleError(key, "must be a list of strings")
    return value


def _mapping(table: Mapping[str, Any], key: str) -> dict[str, str]:
    value = table.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise RuleError(key, "must be a table of strings")
    return dict(value)
