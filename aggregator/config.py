"""The aggregator's configuration: the service registry and the `[aggregator]` section.

One TOML file configures the whole mesh (see INTERFACES.md); this module owns its
`[aggregator]` and `[[services]]` parts and checks the top-level table names. Both parts are
strict: an unknown key, a duplicate name, a bad port or a deadline that is not shorter than the
interval stops start-up with a `ConfigError` naming the entry and the problem. Without a file,
or with no `[[services]]`, the registry is the built-in 15 services of DESIGN.md with
`agent_port = port + 10000`. Environment variables `METRICS_MESH_AGGREGATOR_<KEY>` override
keys of the `[aggregator]` section.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from aggregator._errors import ConfigError

AGENT_PORT_OFFSET = 10000
"""Default distance between a service's own port and its agent's gRPC port."""

TOP_LEVEL_TABLES = ("aggregator", "gateway", "demo", "services")
"""The tables a mesh configuration file may hold."""

ENV_PREFIX = "METRICS_MESH_AGGREGATOR_"
"""Prefix of the environment variables that override `[aggregator]` keys."""

_SERVICE_KEYS = ("name", "host", "port", "agent_port", "type", "data_source")


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One configured service: where its agent listens and how the dashboard groups it."""

    name: str
    host: str
    port: int
    """The service's own (HTTP) port, shown to users."""
    agent_port: int
    """The port of the service's agent (gRPC), the one the aggregator calls."""
    type: str
    data_source: str = ""
    """The external source a `data` service reads; empty when it has none."""

    @property
    def target(self) -> str:
        """The gRPC target of the service's agent, `host:agent_port`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.agent_port}"


class Registry(tuple[ServiceEntry, ...]):
    """The configured services in order: a tuple of `ServiceEntry` with unique names."""

    __slots__ = ()

    def __new__(cls, entries: Iterable[ServiceEntry] = ()) -> Registry:
        """Build a registry; raises ConfigError on a duplicate name or agent address."""
        items = tuple(entries)
        names: dict[str, int] = {}
        targets: dict[str, int] = {}
        for index, entry in enumerate(items):
            if entry.name in names:
                raise ConfigError(
                    f"services[{index}] ({entry.name!r}): duplicate name, already used by "
                    f"services[{names[entry.name]}]"
                )
            if entry.target in targets:
                other = items[targets[entry.target]].name
                raise ConfigError(
                    f"services[{index}] ({entry.name!r}): agent address {entry.target} is "
                    f"already used by services[{targets[entry.target]}] ({other!r})"
                )
            names[entry.name] = index
            targets[entry.target] = index
        return super().__new__(cls, items)

    @property
    def names(self) -> tuple[str, ...]:
        """The service names in registry order."""
        return tuple(entry.name for entry in self)

    def by_name(self, name: str) -> ServiceEntry:
        """The entry called `name`; KeyError when there is none."""
        for entry in self:
            if entry.name == name:
                return entry
        raise KeyError(name)


def _default(name: str, port: int, type_: str, data_source: str = "") -> ServiceEntry:
    return ServiceEntry(name, "127.0.0.1", port, port + AGENT_PORT_OFFSET, type_, data_source)


DEFAULT_REGISTRY = Registry(
    (
        _default("websocket-ingestion", 8001, "core"),
        _default("enrichment-pipeline", 8002, "core"),
        _default("admin-api", 8003, "core"),
        _default("data-api", 8006, "core"),
        _default("sports-data", 8005, "data", "sports"),
        _default("weather-api", 8009, "data", "weather"),
        _default("carbon-intensity-service", 8010, "data", "carbon"),
        _default("electricity-pricing-service", 8011, "data", "electricity"),
        _default("air-quality-service", 8012, "data", "air-quality"),
        _default("calendar-service", 8013, "data", "calendar"),
        _default("smart-meter-service", 8014, "data", "smart-meter"),
        _default("log-aggregator", 8015, "core"),
        _default("energy-correlator", 8017, "analysis"),
        _default("ai-automation-service", 8018, "ai"),
        _default("data-retention", 8080, "core"),
    )
)
"""The 15 services of DESIGN.md, agents on port + 10000 of 127.0.0.1."""


@dataclass(frozen=True, slots=True)
class AggregatorSettings:
    """The `[aggregator]` section: where the AggregatorService listens and how rounds run."""

    host: str = "127.0.0.1"
    port: int = 50100
    """Port of the AggregatorService; 0 picks a free one."""
    interval_seconds: float = 1.0
    """Time between two rounds while somebody listens, and the staleness limit on demand."""
    deadline_seconds: float = 0.5
    """Deadline of each agent call; must be shorter than the interval."""
    history_seconds: float = 900.0
    """Span of the history ring (the ring holds history_seconds / interval_seconds snapshots)."""
    max_subscribers: int = 1000
    """Most concurrent StreamSnapshots calls; more are refused with RESOURCE_EXHAUSTED."""
    backoff_max_seconds: float = 30.0
    """Longest pause between calls to an agent that keeps failing (unreachable or hung)."""

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key."""
        where = "[aggregator]"
        if not self.host:
            raise ConfigError(f"{where} host: must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"{where} port: {self.port} is not in 0..65535")
        for key in ("interval_seconds", "deadline_seconds", "history_seconds"):
            value = getattr(self, key)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{where} {key}: {value} must be a positive number of seconds")
        if self.deadline_seconds >= self.interval_seconds:
            raise ConfigError(
                f"{where} deadline_seconds: {self.deadline_seconds} must be shorter than "
                f"interval_seconds ({self.interval_seconds})"
            )
        if self.history_seconds < self.interval_seconds:
            raise ConfigError(
                f"{where} history_seconds: {self.history_seconds} must be at least "
                f"interval_seconds ({self.interval_seconds})"
            )
        if self.max_subscribers < 1:
            raise ConfigError(f"{where} max_subscribers: {self.max_subscribers} must be >= 1")
        if not math.isfinite(self.backoff_max_seconds) or self.backoff_max_seconds < 0:
            raise ConfigError(
                f"{where} backoff_max_seconds: {self.backoff_max_seconds} must be >= 0"
            )

    @property
    def history_size(self) -> int:
        """How many snapshots the history ring keeps."""
        return max(1, math.ceil(self.history_seconds / self.interval_seconds))


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """A loaded configuration: the registry, the aggregator settings and the raw tables."""

    services: Registry
    aggregator: AggregatorSettings
    raw: Mapping[str, Any]
    """The whole parsed file (other parts validate their own sections from it)."""


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> MeshConfig:
    """Read `path` (None: built-in defaults), apply environment overrides, validate.

    Raises ConfigError naming the file, the entry and the problem.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    where = "built-in defaults"
    if path is not None:
        where = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"{where}: cannot read the configuration file: {error}") from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{where}: not valid TOML: {error}") from error
    try:
        return MeshConfig(
            services=parse_services(raw), aggregator=parse_settings(raw, env), raw=raw
        )
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def parse_settings(raw: Mapping[str, Any], environ: Mapping[str, str]) -> AggregatorSettings:
    """The `[aggregator]` section of a parsed file, with environment overrides applied."""
    unknown = [key for key in raw if key not in TOP_LEVEL_TABLES]
    if unknown:
        raise ConfigError(
            f"unknown top-level table {unknown[0]!r}; allowed: {', '.join(TOP_LEVEL_TABLES)}"
        )
    section = raw.get("aggregator", {})
    if not isinstance(section, Mapping):
        raise ConfigError("[aggregator] must be a table")
    values = read_section("aggregator", section, AggregatorSettings, ENV_PREFIX, environ)
    return AggregatorSettings(**values)


def parse_services(raw: Mapping[str, Any]) -> Registry:
    """The `[[services]]` array of a parsed file; the built-in registry when it is absent."""
    services = raw.get("services")
    if services is None or services == []:
        return DEFAULT_REGISTRY
    if not isinstance(services, list):
        raise ConfigError("services must be an array of tables ([[services]])")
    return Registry(_entry(index, item) for index, item in enumerate(services))


def _entry(index: int, item: Any) -> ServiceEntry:
    label = f"services[{index}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{label}: must be a table")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{label}: name must be a non-empty string, got {name!r}")
    label = f"{label} ({name!r})"
    unknown = [key for key in item if key not in _SERVICE_KEYS]
    if unknown:
        raise ConfigError(
            f"{label}: unknown key {unknown[0]!r}; allowed: {', '.join(_SERVICE_KEYS)}"
        )
    host = item.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{label}: host must be a non-empty string, got {host!r}")
    if "port" not in item:
        raise ConfigError(f"{label}: port is missing")
    port = _port(label, "port", item["port"])
    if "agent_port" in item:
        agent_port = _port(label, "agent_port", item["agent_port"])
    else:
        agent_port = port + AGENT_PORT_OFFSET
        if agent_port > 65535:
            raise ConfigError(
                f"{label}: agent_port defaults to port + {AGENT_PORT_OFFSET} = {agent_port}, "
                "which is not in 1..65535; set agent_port explicitly"
            )
    type_ = item.get("type")
    if not isinstance(type_, str) or not type_.strip() or len(type_.split()) != 1:
        raise ConfigError(f"{label}: type must be one non-empty word, got {type_!r}")
    data_source = item.get("data_source", "")
    if not isinstance(data_source, str):
        raise ConfigError(f"{label}: data_source must be a string, got {data_source!r}")
    return ServiceEntry(name, host, port, agent_port, type_, data_source)


def _port(label: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{label}: {key} must be an integer, got {value!r}")
    if not 1 <= value <= 65535:
        raise ConfigError(f"{label}: {key} {value} is not in 1..65535")
    return value


def read_section(
    name: str,
    section: Mapping[str, Any],
    settings_type: type[Any],
    env_prefix: str,
    environ: Mapping[str, str],
    *,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """The values of the `[name]` table for the dataclass `settings_type`, env overrides applied.

    Every key must be a field of `settings_type` (str, int, float, bool or tuple[str, ...],
    which the environment gives comma-separated), except the fields in `exclude`; so must
    every environment variable starting with `env_prefix` (`METRICS_MESH_<NAME>_<KEY>`).
    Wrong keys and wrong types raise ConfigError naming the key or the variable.
    """
    excluded = set(exclude)
    kinds = {
        field.name: str(field.type)
        for field in fields(settings_type)
        if field.init and field.name not in excluded
    }
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in kinds:
            raise ConfigError(f"[{name}] unknown key {key!r}; allowed: {', '.join(sorted(kinds))}")
        values[key] = _typed(f"[{name}] {key}", value, kinds[key])
    for variable, text in environ.items():
        if not variable.startswith(env_prefix):
            continue
        key = variable[len(env_prefix) :].lower()
        if key not in kinds:
            raise ConfigError(
                f"environment {variable}: unknown [{name}] key {key!r}; allowed: "
                f"{', '.join(sorted(kinds))}"
            )
        values[key] = _from_env(f"environment {variable}", text, kinds[key])
    return values


def _typed(label: str, value: Any, kind: str) -> Any:
    if kind == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{label}: must be a list of strings, got {value!r}")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: must be true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{label}: must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{label}: must be a number, got {value!r}")
    if kind == "int" and not isinstance(value, int):
        raise ConfigError(f"{label}: must be an integer, got {value!r}")
    return value if kind == "int" else float(value)


def _from_env(label: str, text: str, kind: str) -> Any:
    if kind == "str":
        return text
    if kind == "tuple[str, ...]":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{label}: {text!r} is not a boolean (true/false)")
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ConfigError(f"{label}: {text!r} is not a valid {kind}") from None
