"""The checks every pushed item passes before it is kept: names, labels, values and times.

Each refusal is a `Refused` whose reason names the bound and, for a configured cap, its setting
(`IngestSettings`). Names follow Prometheus's syntax: metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`,
label names `[a-zA-Z_][a-zA-Z0-9_]*` without the reserved `__` prefix. Values must be finite:
NaN and infinities are refused (a pusher's NaN is nearly always a bug; Prometheus's staleness
marker is not something a client sends).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping

from aggregator._errors import Refused
from aggregator._ingest.model import Labels
from aggregator._ingest.settings import IngestSettings
from mesh_common.bounded import quote

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
"""Prometheus's metric name syntax."""
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
"""Prometheus's label name syntax."""
_intern = sys.intern


class Bounds:
    """The checks of one `[ingest]` table."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings

    def text(self, value: str, what: str) -> str:
        """`value` when it is at most max_text_length characters (interned); else Refused."""
        limit = self.settings.max_text_length
        if len(value) > limit:
            raise Refused(
                f"{what} is {len(value)} characters, more than {limit}", "max_text_length"
            )
        return _intern(value)

    def name(self, value: str, what: str = "metric name") -> str:
        """A metric name in Prometheus's syntax (interned); else Refused saying what is wrong."""
        self.text(value, what)
        if not METRIC_NAME.fullmatch(value):
            raise Refused(f"{what} {quote(value)} is not [a-zA-Z_:][a-zA-Z0-9_:]*")
        return _intern(value)

    def label_set(self, labels: Mapping[str, str]) -> Labels:
        """The labels as a sorted, interned label set; Refused at the first bad one."""
        settings = self.settings
        if len(labels) > settings.max_labels:
            raise Refused(f"{len(labels)} labels, more than {settings.max_labels}", "max_labels")
        items = []
        for key, value in labels.items():
            if len(key) > settings.max_label_name_length:
                raise Refused(
                    f"label name of {len(key)} characters, more than "
                    f"{settings.max_label_name_length}",
                    "max_label_name_length",
                )
            if not LABEL_NAME.fullmatch(key):
                raise Refused(f"label name {quote(key)} is not [a-zA-Z_][a-zA-Z0-9_]*")
            if key.startswith("__"):
                raise Refused(f"label name {quote(key)}: names starting with __ are reserved")
            if not isinstance(value, str):
                raise Refused(f"label {quote(key)}: its value must be a string")
            if len(value) > settings.max_label_value_length:
                raise Refused(
                    f"label {quote(key)}: value of {len(value)} characters, more than "
                    f"{settings.max_label_value_length}",
                    "max_label_value_length",
                )
            items.append((_intern(key), _intern(value)))
        items.sort()
        return tuple(items)

    @staticmethod
    def value(value: float) -> float:
        """`value` when it is a finite number; Refused for NaN and infinities."""
        if not math.isfinite(value):
            raise Refused(f"value {value!r} is not a finite number (NaN and Inf are refused)")
        return value

    def time(self, value: float | None, now: float) -> float:
        """The reading's time (epoch seconds), `now` when None; Refused when too old or ahead."""
        if value is None:
            return now
        settings = self.settings
        if not math.isfinite(value):
            raise Refused(f"time {value!r} is not a time")
        if value < now - settings.max_past_seconds:
            raise Refused(
                f"time is {now - value:.0f} s in the past, more than {settings.max_past_seconds:g}",
                "max_past_seconds",
            )
        if value > now + settings.max_future_seconds:
            raise Refused(
                f"time is {value - now:.0f} s in the future, more than "
                f"{settings.max_future_seconds:g} (is the pusher's clock right?)",
                "max_future_seconds",
            )
        return value
