"""The service registry: which services the mesh watches, and where their agents listen.

The `[[services]]` array of the mesh file; without one, the built-in 15 services of
DESIGN.md with `agent_port = port + 10000`. Every component that needs the registry (the
aggregator calls the agents, the demo starts the services, the gateway counts them) reads it
from here. Strict: a duplicate name or agent address, a bad port or an unknown key is a
`ConfigError` naming the entry, e.g. `services[1] ('weather-api'): port 70000 is not in 1..65535`,
with the table and the key as its `location` (`("services", 1, "port")`), so a reload of the
file names the line.

A service runs one agent (`host` and `agent_port`) or several instances, each an agent of its
own: `instances = ["10.0.0.5:18009", "10.0.0.6:18009"]` in place of `host` and `agent_port`
(setting both is an error, as are an empty list, an address that is not HOST:PORT and an
address listed twice). A list of one address is the same entry as that `host` and `agent_port`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from mesh_common.addresses import HostPort, format_host_port, is_port, port_range
from mesh_common.config import Key
from mesh_common.errors import ConfigError

AGENT_PORT_OFFSET = 10000
"""Default distance between a service's own port and its agent's gRPC port."""

_KEYS: tuple[tuple[str, str, str], ...] = (
    ("name", "a string", "the service's unique name"),
    ("host", "a string", "where the service and its agent run (default 127.0.0.1)"),
    ("port", "an integer", "the service's own (HTTP) port, shown to users"),
    ("agent_port", "an integer", f"its agent's gRPC port (default port + {AGENT_PORT_OFFSET})"),
    ("type", "a string", "one word grouping services: core, data, analysis, ai, ..."),
    ("data_source", "a string", "the external source a data service reads (optional)"),
    (
        "instances",
        "an array of strings",
        "the agents of a service of several instances, HOST:PORT each (instead of host and "
        "agent_port)",
    ),
)


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
    pushed: bool = False
    """True for a service that pushes its figures (no agent to call: host and ports are empty)."""
    instances: tuple[str, ...] = ()
    """The agent addresses (HOST:PORT) of a service of several instances, in registry order;
    `host` and `agent_port` are then the first one's. Empty for a service of one agent."""
    lapsed: tuple[str, ...] = ()
    """Those of its `addresses` known to be gone: a self-registration whose lease lapsed.
    The rounds do not call them and show them inactive. Empty for every other source."""

    @property
    def target(self) -> str:
        """The gRPC target of the service's agent, `host:agent_port` (its first instance's)."""
        return format_host_port(self.host, self.agent_port)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every agent address of the service: its `instances`, or its one `target`.

        None for a pushed service.
        """
        if self.instances:
            return self.instances
        return () if self.pushed else (self.target,)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts its agents run on, without repeats, in registry order."""
        if not self.instances:
            return (self.host,)
        return tuple(dict.fromkeys(HostPort.parse(address).host for address in self.instances))


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
                    f"services[{names[entry.name]}]",
                    location=("services", index, "name"),
                )
            names[entry.name] = index
            for address in entry.addresses:
                if address in targets:
                    other = items[targets[address]].name
                    raise ConfigError(
                        f"services[{index}] ({entry.name!r}): agent address {address} is "
                        f"already used by services[{targets[address]}] ({other!r})",
                        location=("services", index, _address_key(entry)),
                    )
                targets[address] = index
        return super().__new__(cls, items)

    @property
    def names(self) -> tuple[str, ...]:
        """The service names in registry order."""
        return tuple(entry.name for entry in self)

    @property
    def types(self) -> frozenset[str]:
        """The service types that occur in the registry."""
        return frozenset(entry.type for entry in self)

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


class ServicesSection:
    """The declaration of the `[[services]]` array (the loader's `SectionSpec`)."""

    table = "services"
    summary = "the service registry: one [[services]] table per service"

    def parse(self, value: object, environ: Mapping[str, str], **derived: Any) -> Registry:
        """The registry of the array; the built-in one when it is absent or empty."""
        if value is None or value == []:
            return DEFAULT_REGISTRY
        if not isinstance(value, list):
            raise ConfigError("services must be an array of tables ([[services]])")
        return Registry(_located(index, item) for index, item in enumerate(value))

    def keys(self) -> tuple[Key, ...]:
        """The keys of one `[[services]]` table."""
        return tuple(Key(name, value_type, None, "", text) for name, value_type, text in _KEYS)


SERVICES = ServicesSection()
"""The `[[services]]` declaration; `load_mesh_file(path).read(SERVICES)` is the registry."""


def _address_key(entry: ServiceEntry) -> str:
    """The key that gives an entry's agent addresses."""
    return "instances" if entry.instances else "agent_port"


def _located(index: int, item: Any) -> ServiceEntry:
    """`_entry`, its ConfigError located in the file: ("services", index, key)."""
    try:
        return _entry(index, item)
    except ConfigError as error:
        raise ConfigError(str(error), location=("services", index, *error.location)) from error


def is_service_name(value: object) -> TypeGuard[str]:
    """Whether `value` can name a service: a string that is not empty or only spaces."""
    return isinstance(value, str) and bool(value.strip())


def is_type_word(value: object) -> TypeGuard[str]:
    """Whether `value` can be a service type: one non-empty word."""
    return isinstance(value, str) and len(value.split()) == 1


def _entry(index: int, item: Any) -> ServiceEntry:
    """The entry of one table; a ConfigError's location is the key (under the table)."""
    label = f"services[{index}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{label}: must be a table")
    name = item.get("name")
    if not is_service_name(name):
        raise ConfigError(
            f"{label}: name must be a non-empty string, got {name!r}", location=("name",)
        )
    label = f"{label} ({name!r})"
    allowed = [key for key, _, _ in _KEYS]
    unknown = [key for key in item if key not in allowed]
    if unknown:
        raise ConfigError(
            f"{label}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}",
            location=(unknown[0],),
        )
    if "instances" in item:
        return _several(label, name, item)
    host = item.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise ConfigError(
            f"{label}: host must be a non-empty string, got {host!r}", location=("host",)
        )
    port = _service_port(label, item)
    if "agent_port" in item:
        agent_port = _port(label, "agent_port", item["agent_port"])
    else:
        agent_port = port + AGENT_PORT_OFFSET
        if not is_port(agent_port):
            raise ConfigError(
                f"{label}: agent_port defaults to port + {AGENT_PORT_OFFSET} = {agent_port}, "
                f"which is not in {port_range()}; set agent_port explicitly",
                location=("port",),
            )
    type_, data_source = _grouping(label, item)
    return ServiceEntry(name, host, port, agent_port, type_, data_source)


def _several(label: str, name: str, item: Mapping[str, Any]) -> ServiceEntry:
    """The entry of a service with `instances` (one address makes it a single-agent entry)."""
    port = _service_port(label, item)
    instances = _instances(label, item)
    type_, data_source = _grouping(label, item)
    first = HostPort.parse(instances[0])
    several = instances if len(instances) > 1 else ()
    return ServiceEntry(name, first.host, port, first.port, type_, data_source, instances=several)


def _service_port(label: str, item: Mapping[str, Any]) -> int:
    if "port" not in item:
        raise ConfigError(f"{label}: port is missing")  # no line holds it: the table's
    return _port(label, "port", item["port"])


def _grouping(label: str, item: Mapping[str, Any]) -> tuple[str, str]:
    """The entry's type and data source."""
    type_ = item.get("type")
    if not is_type_word(type_):
        raise ConfigError(
            f"{label}: type must be one non-empty word, got {type_!r}", location=("type",)
        )
    data_source = item.get("data_source", "")
    if not isinstance(data_source, str):
        raise ConfigError(
            f"{label}: data_source must be a string, got {data_source!r}",
            location=("data_source",),
        )
    return type_, data_source


def _instances(label: str, item: Mapping[str, Any]) -> tuple[str, ...]:
    """The `instances` of an entry, each as `format_host_port` writes it; ConfigError if bad."""
    single = [key for key in ("host", "agent_port") if key in item]
    if single:
        raise ConfigError(
            f"{label}: {single[0]} and instances both set; a service of several instances "
            "names every agent in instances (HOST:PORT each), without host or agent_port",
            location=(single[0],),
        )
    value = item["instances"]
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{label}: instances must be a non-empty array of HOST:PORT strings, got {value!r}",
            location=("instances",),
        )
    addresses: dict[str, int] = {}
    for position, text in enumerate(value):
        what = f"{label}: instances[{position}]"
        if not isinstance(text, str):
            raise ConfigError(
                f"{what} must be a HOST:PORT string, got {text!r}", location=("instances",)
            )
        try:
            address = str(HostPort.parse(text, what=what))
        except ConfigError as error:  # an AddressError
            raise ConfigError(str(error), location=("instances",)) from error
        if address in addresses:
            raise ConfigError(
                f"{what}: {address} is listed twice (also instances[{addresses[address]}])",
                location=("instances",),
            )
        addresses[address] = position
    return tuple(addresses)


def _port(label: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{label}: {key} must be an integer, got {value!r}", location=(key,))
    if not is_port(value):
        raise ConfigError(f"{label}: {key} {value} is not in {port_range()}", location=(key,))
    return value
