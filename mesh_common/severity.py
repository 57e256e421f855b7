"""How severe an alert is: one enum, its words, its order and its wire values.

The words are Alertmanager's `severity` label values and the rules' (`severity = "critical"`);
the wire carries `metricsmesh.v1.AlertSeverity` (`severity_level`), mapped here and nowhere
else. The order (most severe first) sorts alert lists on every screen.
"""

from __future__ import annotations

import enum

from metricsmesh.v1 import alerts_pb2


class Severity(enum.StrEnum):
    """An alert's severity, least severe first; its value is the word rules and labels use."""

    INFO = "info"
    WARNING = "warning"
    HIGH = "high"
    CRITICAL = "critical"


DEFAULT_SEVERITY = Severity.WARNING
"""The severity of a rule that names none."""

SEVERITY_WORDS: tuple[str, ...] = tuple(severity.value for severity in Severity)
"""Every severity word, least severe first."""
SEVERITY_CHOICES = f"{', '.join(SEVERITY_WORDS[:-1])} or {SEVERITY_WORDS[-1]}"
"""The words as a description says them: `info, warning, high or critical`."""

_TO_WIRE = {
    Severity.INFO: alerts_pb2.ALERT_SEVERITY_INFO,
    Severity.WARNING: alerts_pb2.ALERT_SEVERITY_WARNING,
    Severity.HIGH: alerts_pb2.ALERT_SEVERITY_HIGH,
    Severity.CRITICAL: alerts_pb2.ALERT_SEVERITY_CRITICAL,
}
_FROM_WIRE: dict[int, Severity] = {wire: severity for severity, wire in _TO_WIRE.items()}
_RANK = {severity: rank for rank, severity in enumerate(reversed(Severity))}


def rank(word: str) -> int:
    """Sort key, most severe first (0 for critical); an unknown word sorts last."""
    try:
        return _RANK[Severity(word)]
    except ValueError:
        return len(_RANK)


def to_wire(severity: Severity) -> alerts_pb2.AlertSeverity.ValueType:
    """The wire enum value of `severity`."""
    return _TO_WIRE[severity]


def from_wire(value: int) -> Severity | None:
    """The severity of a wire value; None for ALERT_SEVERITY_UNSPECIFIED (or unknown)."""
    return _FROM_WIRE.get(value)


def severity_of(message: alerts_pb2.Alert | alerts_pb2.AlertRule) -> str:
    """The severity word of an Alert or AlertRule message.

    Its `severity_level`, else the deprecated `severity` word (a client of an older contract),
    else the default.
    """
    level = from_wire(message.severity_level)
    if level is not None:
        return level.value
    return message.severity or DEFAULT_SEVERITY.value
