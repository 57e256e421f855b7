"""The `[demo]` section of the shared TOML file: load, misbehaviour, timeouts.

Strict like the other sections: an unknown key or a wrong type is a ConfigError naming it.
Environment variables `METRICS_MESH_DEMO_<KEY>` override the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aggregator import ConfigError
from aggregator.config import read_section

ENV_PREFIX = "METRICS_MESH_DEMO_"


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """How `metrics-mesh demo` runs its fleet (every field is a `[demo]` key)."""

    upstream_port: int = 8099
    """Port of the fake upstream the data services fetch from."""
    load_scale: float = 1.0
    """Multiplies every service's event rates (0.5 = half as busy)."""
    misbehave: bool = True
    """Let the three services below misbehave on purpose (false: all behave)."""
    restarting_service: str = "sports-data"
    """This service exits every `up_seconds` and is restarted `down_seconds` later ("" = none)."""
    up_seconds: float = 40.0
    """How long the restarting service runs before it exits."""
    down_seconds: float = 10.0
    """How long the restarting service stays down before the supervisor restarts it."""
    not_serving_service: str = "calendar-service"
    """This service reports NOT_SERVING now and then ("" = none)."""
    not_serving_after_seconds: float = 25.0
    """When its first NOT_SERVING window starts (seconds after its start)."""
    not_serving_every_seconds: float = 45.0
    """Period of its NOT_SERVING windows."""
    not_serving_for_seconds: float = 12.0
    """Length of each NOT_SERVING window."""
    error_service: str = "energy-correlator"
    """This service's agent answers GetEventRate with INTERNAL now and then ("" = none)."""
    error_after_seconds: float = 35.0
    """When its first error window starts (seconds after its start)."""
    error_every_seconds: float = 50.0
    """Period of its error windows."""
    error_for_seconds: float = 10.0
    """Length of each error window."""
    startup_timeout_seconds: float = 60.0
    """How long every process may take to become ready."""
    stop_timeout_seconds: float = 5.0
    """How long processes get after SIGTERM before they are killed."""
    run_dir: str = ""
    """Where logs and the generated config go ("" = a new temporary directory)."""

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key."""
        if not 0 <= self.upstream_port <= 65535:
            raise ConfigError(f"[demo] upstream_port: {self.upstream_port} is not in 0..65535")
        if not math.isfinite(self.load_scale) or self.load_scale < 0:
            raise ConfigError(f"[demo] load_scale: {self.load_scale} must be >= 0")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_seconds") and (not math.isfinite(value) or value <= 0):
                raise ConfigError(f"[demo] {field.name}: {value} must be > 0 seconds")
        for prefix in ("not_serving", "error"):
            every = getattr(self, f"{prefix}_every_seconds")
            length = getattr(self, f"{prefix}_for_seconds")
            if length >= every:
                raise ConfigError(
                    f"[demo] {prefix}_for_seconds: {length} must be shorter than "
                    f"{prefix}_every_seconds ({every})"
                )


def load_demo_settings(
    raw: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> DemoSettings:
    """The `[demo]` table of a parsed config file, with environment overrides applied."""
    section = raw.get("demo", {})
    if not isinstance(section, Mapping):
        raise ConfigError("[demo] must be a table")
    env = os.environ if environ is None else environ
    values = read_section("demo", section, DemoSettings, ENV_PREFIX, env)
    return DemoSettings(**values)
