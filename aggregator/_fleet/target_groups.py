"""Prometheus target groups (file_sd and http_sd) read as services of the mesh.

The format is Prometheus's own, in JSON or YAML:

    [{"targets": ["10.0.0.5:18009", "10.0.0.6:18009"],
      "labels": {"service": "weather-api", "type": "data", "data_source": "weather"}}]

The labels give the entry: `service` (else `__meta_metricsmesh_service`, as the mesh's own
http_sd endpoint writes it, else `job`) names the service, `type` its one-word type (default
`discovered`), `data_source` its data source, `port` its own HTTP port (default: the first
target's port); each of them may be written `__meta_metricsmesh_<label>` too. Each target
is the HOST:PORT of one instance's agent. Groups naming the same service add their targets
to it, and must then agree on its labels. Other labels are ignored (they are Prometheus's).
Reading is strict: a document that is not a list of groups, a group without a service name,
a target that is not HOST:PORT, is a `ConfigError` naming the group and what is wrong, and
the caller keeps what it had.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh_common.addresses import HostPort, is_port, port_range
from mesh_common.errors import AddressError, ConfigError
from mesh_common.registry import ServiceEntry

DEFAULT_TYPE = "discovered"
"""The type of a discovered service whose group has no `type` label."""
META = "__meta_metricsmesh_"
"""The prefix of the labels the mesh's http_sd endpoint writes."""
MAX_LABEL_LENGTH = 256
"""The longest service name, type or data source a group may give."""


@dataclass(frozen=True, slots=True)
class Discovered:
    """One service as target groups describe it: its labels and its agents' addresses."""

    name: str
    type: str
    data_source: str
    port: int
    targets: tuple[str, ...]
    """The agents' HOST:PORT, in the order the groups list them, each once."""


def _label(labels: Mapping[str, Any], name: str, where: str) -> str | None:
    value = labels.get(name, labels.get(META + name))
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_LABEL_LENGTH:
        raise ConfigError(
            f"{where}: label {name!r} must be a string of at most {MAX_LABEL_LENGTH} "
            f"characters, got {str(value)[:40]!r}"
        )
    return value


def _targets(group: Mapping[str, Any], where: str) -> tuple[str, ...]:
    targets = group.get("targets")
    if not isinstance(targets, list):
        raise ConfigError(f"{where}: targets must be a list of HOST:PORT strings")
    found: dict[str, None] = {}
    for position, target in enumerate(targets):
        what = f"{where}: targets[{position}]"
        if not isinstance(target, str):
            raise ConfigError(f"{what} must be a HOST:PORT string, got {target!r}")
        try:
            found.setdefault(str(HostPort.parse(target, what=what)), None)
        except AddressError as error:
            raise ConfigError(str(error)) from error
    return tuple(found)


def _service(group: Any, where: str) -> Discovered | None:
    """The service one group describes (None for a group without targets)."""
    if not isinstance(group, Mapping):
        raise ConfigError(f"{where}: must be a table with targets and labels")
    labels = group.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{where}: labels must be a table of strings")
    targets = _targets(group, where)
    if not targets:
        return None
    name = _label(labels, "service", where) or _label(labels, "job", where)
    if not name or not name.strip():
        raise ConfigError(f"{where}: no service label (nor job) names the service")
    type_ = _label(labels, "type", where) or DEFAULT_TYPE
    if len(type_.split()) != 1:
        raise ConfigError(f"{where}: label 'type' must be one word, got {type_!r}")
    port_text = _label(labels, "port", where)
    port = HostPort.parse(targets[0]).port
    if port_text is not None:
        if not port_text.isdigit() or not is_port(int(port_text)):
            raise ConfigError(f"{where}: label 'port' {port_text!r} is not in {port_range()}")
        port = int(port_text)
    data_source = _label(labels, "data_source", where) or ""
    return Discovered(name, type_, data_source, port, targets)


def read_groups(document: Any, source: str) -> dict[str, Discovered]:
    """The services of a target group list, by name, in first-seen order; ConfigError if bad."""
    if document is None:
        return {}
    if not isinstance(document, list):
        raise ConfigError(f"{source}: must be a list of target groups ([{{targets, labels}}])")
    found: dict[str, Discovered] = {}
    for index, group in enumerate(document):
        where = f"{source}: group {index}"
        service = _service(group, where)
        if service is None:
            continue
        known = found.get(service.name)
        if known is None:
            found[service.name] = service
            continue
        labels = (service.type, service.data_source, service.port)
        if (known.type, known.data_source, known.port) != labels:
            raise ConfigError(
                f"{where}: service {service.name!r} is labelled type={service.type!r}, "
                f"data_source={service.data_source!r}, port={service.port} here and "
                f"type={known.type!r}, data_source={known.data_source!r}, port={known.port} "
                "in an earlier group"
            )
        more = tuple(t for t in service.targets if t not in known.targets)
        found[service.name] = Discovered(
            known.name, known.type, known.data_source, known.port, known.targets + more
        )
    return found


def to_entry(service: Discovered) -> ServiceEntry:
    """The registry entry of a discovered service: each target an instance.

    As `[[services]]` writes one (`mesh_common.registry`): one target is a service of one
    agent, several are its `instances`.
    """
    first = HostPort.parse(service.targets[0])
    several = service.targets if len(service.targets) > 1 else ()
    return ServiceEntry(
        service.name,
        first.host,
        service.port,
        first.port,
        service.type,
        service.data_source,
        instances=several,
    )
