"""The REST forms of an alert rule, mapped onto the contract's `AlertRule`: the one place for it.

`POST /api/v1/alerts/rules` accepts three spellings of a rule and `rule_from_form()` turns each
into the `AlertRule` that `CreateAlertRule` takes; the aggregator then validates the rule itself
(known figure, comparator, severity, ...) and answers INVALID_ARGUMENT naming the field.

- The native form, field for field the message: `name`, `figure`, `comparator`, `threshold` (a
  number) or `threshold_text` (for `status`), `clear_threshold`, `for_seconds`,
  `keep_firing_for_seconds`, `severity`, `service_names`, `service_types`, `kinds`, `labels`,
  `annotations` (what `GET /api/v1/alerts/rules` returns, so a listed rule can be posted again).
- Seed 003's form: `metric_name` (the figure), `condition: "> 80"` (the comparator, and the
  threshold unless `threshold` gives it), `for_duration` (seconds, or `30s` / `5m` / `1h`),
  `evaluation_interval` (accepted and ignored: rules are evaluated on every round).
- Seed 004's form: `condition: "error_rate > 0.05"` names the figure too; `notification`
  becomes the label `notification` (Alertmanager's routing decides where it goes).
- Every form may add `matchers`, PromQL label matchers of pushed series (`{host="server01"}`):
  the rule then watches only the series pushed under its name that they select. Without them a
  rule on `cpu_usage_percent` watches the agents' CPU and the pushed series of that name alike.

The seeds' figure names are mapped (`SEED_FIGURES`); any other name is passed on as it is.
"""

from __future__ import annotations

import math
import re
from typing import Any

from metricsmesh.v1 import alerts_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway._errors import AlertFormError
from mesh_common.severity import SEVERITY_CHOICES
from mesh_common.wire_time import set_seconds

SEED_FIGURES: dict[str, str] = {
    "avg_response_time": "latency_avg_ms",
    "error_rate": "error_rate",
    "throughput_tps": "events_per_second",
}
"""Figure names of the seeds' rules -> the row schema's (`mesh_common.figures`)."""

COMPARATORS = (">=", "<=", "==", "!=", ">", "<")
"""The comparators of a rule (two-character ones first, for parsing)."""

MAX_TEXT = 1024
"""Longest text value of a form (names, conditions, label and annotation values)."""
MAX_ITEMS = 256
"""Most items of a list or map of a form."""

_CONDITION = re.compile(
    r"^\s*(?P<figure>[A-Za-z_][A-Za-z0-9_]*)?\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>.*?)\s*$"
)
_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TYPE_TAG = re.compile(r"^(?:float|str|int|bool|(?:list|dict)\[.*\])$")

Text = str
Seconds = float | str


class RuleForm(BaseModel):
    """The body of `POST /api/v1/alerts/rules`: the native form, seed 003's or seed 004's."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=MAX_TEXT)

    name: Text | None = Field(default=None, description="The alert's name (alertname).")
    figure: Text | None = Field(
        default=None, description="A row figure: status, events_per_second, error_rate, ..."
    )
    metric_name: Text | None = Field(
        default=None, description="Seed 003: the figure (avg_response_time, error_rate, ...)."
    )
    condition: Text | None = Field(
        default=None,
        description='Seed 003: "> 80"; seed 004: "error_rate > 0.05" (figure, comparator, '
        "threshold).",
    )
    comparator: Text | None = Field(default=None, description=">, >=, <, <=, == or !=.")
    threshold: float | Text | None = Field(
        default=None, description="The number compared with (a word for status: inactive, ...)."
    )
    threshold_text: Text | None = Field(
        default=None, description="The text compared with, for status: active, inactive, error."
    )
    clear_threshold: float | None = Field(
        default=None, description="What a firing alert must cross to resolve (hysteresis)."
    )
    for_seconds: float | None = Field(
        default=None, description="How long the condition must hold before firing."
    )
    for_duration: Seconds | None = Field(
        default=None, description='Seed 003: `for_seconds`, in seconds or as "30s", "5m", "1h".'
    )
    keep_firing_for_seconds: float | None = Field(
        default=None, description="How long a firing alert keeps firing after its condition ends."
    )
    evaluation_interval: Seconds | None = Field(
        default=None, description="Seed 003: accepted and ignored (evaluated on every round)."
    )
    severity: Text | None = Field(default=None, description=f"{SEVERITY_CHOICES}.")
    service_names: list[Text] | None = Field(
        default=None, max_length=MAX_ITEMS, description="Only these services (default: all)."
    )
    service_types: list[Text] | None = Field(
        default=None, max_length=MAX_ITEMS, description="Only services of these types."
    )
    kinds: list[Text] | None = Field(
        default=None, max_length=MAX_ITEMS, description="Watch these kinds of event instead."
    )
    labels: dict[Text, Text] | None = Field(
        default=None, max_length=MAX_ITEMS, description="Labels added to every alert."
    )
    annotations: dict[Text, Text] | None = Field(
        default=None,
        max_length=MAX_ITEMS,
        description="summary, description, ...; {service}, {kind}, {value}, {threshold} filled in.",
    )
    notification: Text | None = Field(
        default=None, description="Seed 004: kept as the label `notification`."
    )
    matchers: Text | None = Field(
        default=None,
        description='Label matchers of pushed series, e.g. {host="server01"}: only those '
        "series of the figure's name are watched ({} for all of them).",
    )


EXAMPLES: dict[str, dict[str, Any]] = {
    "native": {
        "summary": "The native form",
        "value": {
            "name": "HighErrorRate",
            "figure": "error_rate",
            "comparator": ">",
            "threshold": 0.05,
            "clear_threshold": 0.03,
            "for_seconds": 30,
            "severity": "critical",
            "service_types": ["core"],
            "annotations": {"summary": "{service} fails {value} of its events"},
        },
    },
    "seed-003": {
        "summary": "Seed 003's payload",
        "value": {
            "name": "High CPU Alert",
            "metric_name": "avg_response_time",
            "condition": "> 80",
            "threshold": 80.0,
            "severity": "high",
            "evaluation_interval": 60,
            "for_duration": 300,
            "annotations": {"description": "Response time above 80 ms for 5 minutes"},
        },
    },
    "seed-004": {
        "summary": "Seed 004's condition",
        "value": {
            "name": "high_error_rate",
            "condition": "error_rate > 0.05",
            "severity": "critical",
        },
    },
}
"""Example bodies for /docs."""


def seed_figure(name: str) -> str:
    """The row schema's name of a figure named as the seeds name it (others unchanged)."""
    return SEED_FIGURES.get(name, name)


def parse_seconds(value: float | str, field: str) -> float:
    """Seconds from a number or a duration text (`90`, `30s`, `5m`, `1.5h`, `250ms`)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise AlertFormError(field, f"{value!r} is not a duration (e.g. 300, '30s', '5m')")
        seconds = float(match["number"]) * _UNIT_SECONDS[match["unit"]]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise AlertFormError(field, f"must be a duration >= 0, got {value!r}")
    return seconds


def parse_condition(text: str) -> tuple[str | None, str, float | str | None]:
    """`"> 80"` / `"error_rate > 0.05"` / `"status == inactive"` -> (figure, comparator, value).

    The figure is None when the condition names none; the value a number, a word, or None
    when the condition stops after the comparator (`threshold` then gives it).
    """
    match = _CONDITION.match(text)
    if match is None:
        raise AlertFormError(
            "condition",
            f"{text!r} is not a condition: want [figure] comparator [threshold], e.g. '> 80' "
            f"or 'error_rate > 0.05', with a comparator of {', '.join(COMPARATORS)}",
        )
    raw = match["value"].strip("'\"")
    value: float | str | None = None
    if raw:
        try:
            value = float(raw)
        except ValueError:
            if _WORD.match(raw) is None:
                raise AlertFormError(
                    "condition", f"threshold {raw!r} is neither a number nor a word"
                ) from None
            value = raw
        if isinstance(value, float) and not math.isfinite(value):
            raise AlertFormError("condition", f"threshold {raw!r} is not a finite number")
    return match["figure"], match["op"], value


def _number_or_word(value: float | str | None) -> tuple[float | None, str | None]:
    """A threshold given as a number, a numeric text (`"80"`) or a word (`"inactive"`)."""
    if value is None or isinstance(value, float):
        return value, None
    try:
        number = float(value)
    except ValueError:
        return None, value
    if not math.isfinite(number):
        raise AlertFormError("threshold", f"{value!r} is not a finite number")
    return number, None


def _form(body: object) -> RuleForm:
    if not isinstance(body, dict):
        raise AlertFormError("body", "must be a JSON object (an alert rule)")
    try:
        return RuleForm.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        parts = [str(part) for part in first["loc"]]
        # A union's error names the member it tried (`threshold.float`): not a field.
        field = ".".join(parts[:1] + [p for p in parts[1:] if not _TYPE_TAG.match(p)]) or "body"
        raise AlertFormError(field, first["msg"]) from None


def _one(field: str, *candidates: tuple[str, Any]) -> Any:
    """The one value given among `candidates` (name, value); AlertFormError when they differ."""
    given = [(name, value) for name, value in candidates if value is not None]
    if not given:
        return None
    first_name, first = given[0]
    for name, value in given[1:]:
        if value != first:
            raise AlertFormError(
                field, f"{first_name} says {first!r} but {name} says {value!r}; give one"
            )
    return first


def rule_from_form(body: object) -> alerts_pb2.AlertRule:
    """The AlertRule a REST body describes; AlertFormError naming the field that is wrong."""
    form = _form(body)
    cond_figure: str | None = None
    cond_op: str | None = None
    cond_value: float | str | None = None
    if form.condition is not None:
        cond_figure, cond_op, cond_value = parse_condition(form.condition)
    figure = _figure(form, cond_figure)
    comparator = _one("comparator", ("comparator", form.comparator), ("condition", cond_op))
    threshold, threshold_text = _thresholds(form, cond_value)
    for_seconds = _one(
        "for_duration",
        ("for_seconds", form.for_seconds),
        (
            "for_duration",
            None if form.for_duration is None else parse_seconds(form.for_duration, "for_duration"),
        ),
    )
    if form.evaluation_interval is not None:
        parse_seconds(form.evaluation_interval, "evaluation_interval")  # checked, then ignored
    rule = alerts_pb2.AlertRule(
        name=form.name or "",
        figure=figure,
        comparator=comparator or "",
        threshold=threshold or 0.0,
        threshold_text=threshold_text or "",
        severity=form.severity or "",
        service_names=form.service_names or [],
        service_types=form.service_types or [],
        kinds=form.kinds or [],
        labels=form.labels or {},
        annotations=form.annotations or {},
        matchers=form.matchers or "",
    )
    _set_optional(rule, form, for_seconds)
    return rule


def _figure(form: RuleForm, cond_figure: str | None) -> str:
    """The one figure the form names (figure, metric_name or the condition's); required."""
    figure: str | None = _one(
        "figure",
        ("figure", form.figure),
        ("metric_name", None if form.metric_name is None else seed_figure(form.metric_name)),
        ("condition", None if cond_figure is None else seed_figure(cond_figure)),
    )
    if figure is None:
        raise AlertFormError(
            "figure",
            "missing: give figure, metric_name, or a condition such as 'error_rate > 0.05'",
        )
    return figure


def _thresholds(form: RuleForm, cond_value: float | str | None) -> tuple[float | None, str | None]:
    """(threshold, threshold_text): a number or a word, from `threshold` or the condition."""
    number = cond_value if isinstance(cond_value, float) else None
    word = cond_value if isinstance(cond_value, str) else None
    given_number, given_word = _number_or_word(form.threshold)
    threshold = _one("threshold", ("threshold", given_number), ("condition", number))
    threshold_text = _one(
        "threshold_text",
        ("threshold_text", form.threshold_text),
        ("threshold", given_word),
        ("condition", word),
    )
    return threshold, threshold_text


def _set_optional(rule: alerts_pb2.AlertRule, form: RuleForm, for_seconds: Any) -> None:
    """The fields that stay unset unless the form gives them."""
    if form.notification is not None:
        rule.labels["notification"] = form.notification
    if form.clear_threshold is not None:
        rule.clear_threshold = form.clear_threshold
    if for_seconds is not None:
        set_seconds(rule.for_duration, parse_seconds(for_seconds, "for_seconds"))
    if form.keep_firing_for_seconds is not None:
        set_seconds(
            rule.keep_firing_for,
            parse_seconds(form.keep_firing_for_seconds, "keep_firing_for_seconds"),
        )
