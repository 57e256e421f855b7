"""The `[discovery]` table: file_sd files, http_sd URLs and self-registered agents add services.

Strict, like every table: a file pattern that does not end in `.json`, `.yml` or `.yaml`, a
URL that is not http(s), a duration that is not positive, is a ConfigError naming the key.
Environment variables `METRICS_MESH_DISCOVERY_<KEY>` override the file (lists
comma-separated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from mesh_common.config import Section, setting
from mesh_common.errors import ConfigError

FILE_SD_SUFFIXES = (".json", ".yml", ".yaml")
"""What a file_sd pattern may end in (as Prometheus's `file_sd_configs` files)."""


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """The `[discovery]` table: where else the aggregator finds services."""

    file_sd: tuple[str, ...] = setting(
        (),
        "Prometheus file_sd files (JSON or YAML target groups): paths or globs ending in "
        ".json, .yml or .yaml; checked every round interval, re-read when they change",
    )
    http_sd: tuple[str, ...] = setting(
        (), "Prometheus http_sd URLs (JSON target groups), read every http_sd_refresh_seconds"
    )
    http_sd_refresh_seconds: float = setting(30.0, "time between two reads of an http_sd URL")
    http_sd_timeout_seconds: float = setting(
        5.0, "longest wait for an http_sd answer; a slower one keeps the last good targets"
    )
    max_bytes: int = setting(
        4_194_304,
        "largest file_sd file or http_sd answer read (4 MiB); a larger one is refused and "
        "its last good targets kept",
    )
    accept_registrations: bool = setting(
        False,
        "let agents register themselves (RegistrationService; AgentServer register_with); "
        "when false every registration is refused with PERMISSION_DENIED",
    )
    lease_seconds: float = setting(
        30.0,
        "a registration not renewed for this long lapses: its instance shows inactive and is "
        "not called (agents renew every 10 s)",
    )
    remove_after_seconds: float = setting(
        300.0, "a lapsed registration is removed from the fleet after this long"
    )
    max_registrations: int = setting(
        1000,
        "most registered instances held, lapsed ones included (0.6 KB each, and once called "
        "about 90 KB for the instance's channel, health watch and rows, as for any instance); "
        "more are refused with RESOURCE_EXHAUSTED",
    )

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key."""
        for pattern in self.file_sd:
            if not pattern.endswith(FILE_SD_SUFFIXES):
                raise ConfigError(f"file_sd: {pattern!r} must end in {', '.join(FILE_SD_SUFFIXES)}")
        for url in self.http_sd:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"http_sd: {url!r} is not an http:// or https:// URL")
        for key in ("http_sd_refresh_seconds", "http_sd_timeout_seconds", "lease_seconds"):
            value = getattr(self, key)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{key}: {value} must be a positive number of seconds")
        if not math.isfinite(self.remove_after_seconds) or self.remove_after_seconds < 0:
            raise ConfigError(f"remove_after_seconds: {self.remove_after_seconds} must be >= 0")
        for key in ("max_bytes", "max_registrations"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: {getattr(self, key)} must be >= 1")

    @property
    def configured(self) -> bool:
        """True when a file_sd pattern or an http_sd URL is set, or registrations are accepted."""
        return bool(self.file_sd or self.http_sd or self.accept_registrations)


SECTION = Section(
    "discovery", DiscoverySettings, "file_sd files, http_sd URLs and self-registered agents"
)
"""The `[discovery]` table's declaration."""
