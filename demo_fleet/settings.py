"""The `[demo]` table of the mesh file: load, replicas, misbehaviour, timeouts.

Strict like the other tables: an unknown key or a wrong type is a ConfigError naming it.
Environment variables `METRICS_MESH_DEMO_<KEY>` override the file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mesh_common.addresses import is_port, port_range
from mesh_common.config import Section, setting
from mesh_common.errors import ConfigError

REPLICA_PORT_STEP = 1000
"""Instance k of a replicated service listens on the first's ports + (k - 1) x this."""
MAX_REPLICAS = 10
"""Most instances `[demo] replicas` may ask for (each is a process on this machine)."""


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """How `metrics-mesh demo` runs its fleet (every field is a `[demo]` key)."""

    upstream_port: int = setting(8099, "Port of the fake upstream the data services fetch from")
    load_scale: float = setting(1.0, "Multiplies every service's event rates (0.5 = half as busy)")
    misbehave: bool = setting(
        True,
        "Let the three services below misbehave on purpose and kill a replica now and then "
        "(false: all behave)",
    )
    restarting_service: str = setting(
        "sports-data",
        "This service exits every `up_seconds` and is restarted `down_seconds` later ('' = none)",
    )
    up_seconds: float = setting(40.0, "How long the restarting service runs before it exits")
    down_seconds: float = setting(
        10.0, "How long the restarting service stays down before the supervisor restarts it"
    )
    not_serving_service: str = setting(
        "calendar-service", "This service reports NOT_SERVING now and then ('' = none)"
    )
    not_serving_after_seconds: float = setting(
        25.0, "When its first NOT_SERVING window starts (seconds after its start)"
    )
    not_serving_every_seconds: float = setting(45.0, "Period of its NOT_SERVING windows")
    not_serving_for_seconds: float = setting(12.0, "Length of each NOT_SERVING window")
    error_service: str = setting(
        "energy-correlator",
        "This service's agent answers GetEventRate with INTERNAL now and then ('' = none)",
    )
    error_after_seconds: float = setting(
        35.0, "When its first error window starts (seconds after its start)"
    )
    error_every_seconds: float = setting(50.0, "Period of its error windows")
    error_for_seconds: float = setting(10.0, "Length of each error window")
    replicated_service: str = setting(
        "log-aggregator",
        "This service runs `replicas` instances, each a process of its own ('' = none)",
    )
    replicas: int = setting(
        2,
        "How many instances the replicated service runs (instance k's ports are the first's "
        f"+ (k - 1) x {REPLICA_PORT_STEP})",
    )
    replica_up_seconds: float = setting(
        30.0,
        "How long the replicated service's last instance runs (once ready) before the demo "
        "kills it (SIGKILL, like a crashed pod)",
    )
    replica_down_seconds: float = setting(
        15.0, "How long the killed instance stays down before the supervisor restarts it"
    )
    startup_timeout_seconds: float = setting(
        60.0, "How long every process may take to become ready"
    )
    stop_timeout_seconds: float = setting(
        5.0, "How long processes get after SIGTERM before they are killed"
    )
    run_dir: str = setting(
        "", "Where logs and the generated config go ('' = a new temporary directory)"
    )

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key."""
        if not is_port(self.upstream_port, allow_zero=True):
            raise ConfigError(
                f"upstream_port: {self.upstream_port} is not in {port_range(allow_zero=True)}"
            )
        if not math.isfinite(self.load_scale) or self.load_scale < 0:
            raise ConfigError(f"load_scale: {self.load_scale} must be >= 0")
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ConfigError(f"replicas: {self.replicas} is not in 1..{MAX_REPLICAS}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_seconds") and (not math.isfinite(value) or value <= 0):
                raise ConfigError(f"{field.name}: {value} must be > 0 seconds")
        for prefix in ("not_serving", "error"):
            every = getattr(self, f"{prefix}_every_seconds")
            length = getattr(self, f"{prefix}_for_seconds")
            if length >= every:
                raise ConfigError(
                    f"{prefix}_for_seconds: {length} must be shorter than "
                    f"{prefix}_every_seconds ({every})"
                )


SECTION = Section("demo", DemoSettings, "how `metrics-mesh demo` runs its fleet")
"""The `[demo]` table's declaration."""
