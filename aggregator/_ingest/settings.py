"""The `[ingest]` table: metrics pushed from outside the agents, and the caps on them.

[ingest]
enabled = true                  # accept pushed metrics and events (Ingest, OTLP)
default_service = "metrics-service"   # the row seed 004's events count for when they name none
staleness_seconds = 0.0         # a pushed row is active this long after its last push;
                                # 0 = 3 x its push interval, 30 s until two pushes are seen
forget_after_seconds = 86400.0  # a pushed row (or series) silent this long is dropped
otlp_port = 4317                # a second port of the aggregator for OTLP/gRPC (4317 is OTLP's);
                                # 0 = a free one, -1 = none (its own port serves OTLP too)
max_batch = 1000                # items per request (seed 003's BATCH_INSERT_SIZE)
max_series = 100000             # pushed series held in all
max_series_per_metric = 10000   # label sets of one metric name
max_services = 1000             # pushed services (rows)
max_kinds_per_service = 100     # kinds of event per pushed service
max_labels = 32                 # labels per series
max_label_name_length = 128     # characters
max_label_value_length = 1024   # characters
max_text_length = 1024          # help text, unit, service and kind names, in characters
max_past_seconds = 3600.0       # a value read longer ago is refused
max_future_seconds = 300.0      # a value read further ahead (a skewed clock) is refused
max_pushed_per_snapshot = 10000 # changed series a streamed snapshot carries (history gets all)

Every cap refuses what is past it with a reason naming the setting (REST 422, OTLP
`partial_success`), and counts it; what was held stays. The caps bound memory: the benchmark
`python -m bench ingest memory` measures the bytes per series and per pushed row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mesh_common.addresses import is_port, port_range
from mesh_common.config import Section, setting
from mesh_common.errors import ConfigError

DEFAULT_STALENESS_SECONDS = 30.0
"""A pushed row's staleness window until its push interval is known."""
STALENESS_INTERVALS = 3.0
"""A pushed row is stale after this many of its push intervals without a push."""


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """The `[ingest]` table."""

    enabled: bool = setting(True, "accept metrics and events pushed to the mesh (Ingest, OTLP)")
    default_service: str = setting(
        "metrics-service", "the pushed row that seed 004's events count for when they name none"
    )
    staleness_seconds: float = setting(
        0.0, "a pushed row stays active this long after its last push (0 = 3 x its interval)"
    )
    forget_after_seconds: float = setting(
        86_400.0, "a pushed row or series that sent nothing for this long is dropped"
    )
    otlp_port: int = setting(
        4317, "a second aggregator port for OTLP/gRPC (0 = a free one, -1 = none)"
    )
    max_batch: int = setting(1000, "most metrics or events in one request")
    max_series: int = setting(100_000, "most pushed series held in all")
    max_series_per_metric: int = setting(10_000, "most label sets of one metric name")
    max_services: int = setting(1000, "most pushed services (rows)")
    max_kinds_per_service: int = setting(100, "most kinds of event of one pushed service")
    max_labels: int = setting(32, "most labels of one series")
    max_label_name_length: int = setting(128, "longest label name, in characters")
    max_label_value_length: int = setting(1024, "longest label value, in characters")
    max_text_length: int = setting(
        1024, "longest help text, unit, metric, service or kind name, in characters"
    )
    max_past_seconds: float = setting(3600.0, "a value read longer ago than this is refused")
    max_future_seconds: float = setting(300.0, "a value read further ahead than this is refused")
    max_pushed_per_snapshot: int = setting(
        10_000, "most changed series one streamed snapshot carries (history stores all)"
    )

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key."""
        for name in (
            "max_batch", "max_series", "max_series_per_metric", "max_services",
            "max_kinds_per_service", "max_labels", "max_label_name_length",
            "max_label_value_length", "max_text_length", "max_pushed_per_snapshot",
        ):  # fmt: skip
            value = getattr(self, name)
            if not 1 <= value <= 10_000_000:
                raise ConfigError(f"{name}: {value} must be in 1..10000000")
        for name in ("max_past_seconds", "max_future_seconds", "forget_after_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: {value} must be a positive number of seconds")
        if not (math.isfinite(self.staleness_seconds) and self.staleness_seconds >= 0):
            raise ConfigError(
                f"staleness_seconds: {self.staleness_seconds} must be 0 (automatic) or positive"
            )
        if not self.default_service or len(self.default_service) > self.max_text_length:
            raise ConfigError("default_service: must be a non-empty name")
        if self.otlp_port != -1 and not is_port(self.otlp_port, allow_zero=True):
            raise ConfigError(
                f"otlp_port: {self.otlp_port} is not in {port_range(allow_zero=True)} (or -1)"
            )


SECTION = Section("ingest", IngestSettings, "metrics pushed to the mesh: REST, events and OTLP")
"""The `[ingest]` table's declaration."""
