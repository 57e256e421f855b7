"""The demo's instances: one process per instance of every service, each on its own ports.

A service of one agent runs one instance. The `[demo] replicated_service` runs `replicas`
of them, and a service the registry gives `instances` runs one per listed agent address;
instance k listens on the first's HTTP port + (k - 1) x `REPLICA_PORT_STEP` (and, when the
demo chose the agent ports, on the first's agent port + the same). `registry_of` turns the
instances back into the registry the aggregator reads: a service of several instances is an
entry with `instances`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from demo_fleet.settings import REPLICA_PORT_STEP, DemoSettings
from mesh_common.addresses import HostPort, format_host_port, is_port, port_range
from mesh_common.errors import ConfigError
from mesh_common.registry import Registry, ServiceEntry


def instance_name(service: str, number: int, count: int) -> str:
    """The name of instance `number` of a service of `count`: `log-aggregator#2` (one: its own)."""
    return service if count == 1 else f"{service}#{number}"


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of a demo service: one process, its HTTP port and its agent's port."""

    entry: ServiceEntry
    """The registry entry it is an instance of."""
    number: int
    """Its place among the service's instances, from 1."""
    count: int
    """How many instances the service runs."""
    host: str
    port: int
    """Its own HTTP port."""
    agent_port: int

    @property
    def name(self) -> str:
        """The process's name (its log file's, the supervisor's): see `instance_name`."""
        return instance_name(self.entry.name, self.number, self.count)

    @property
    def agent_address(self) -> str:
        """`host:agent_port`, as the registry lists it."""
        return format_host_port(self.host, self.agent_port)

    def moved(self, port: int, agent_port: int) -> Instance:
        """The same instance on other ports."""
        return dataclasses.replace(self, port=port, agent_port=agent_port)


def demo_instances(registry: Registry, demo: DemoSettings) -> tuple[Instance, ...]:
    """Every instance the demo starts, in registry order.

    Raises ConfigError when a stepped port leaves 1..65535 or two instances get one name.
    """
    instances: list[Instance] = []
    for entry in registry:
        if entry.instances:
            agents = [HostPort.parse(address) for address in entry.instances]
        elif entry.name == demo.replicated_service:
            agents = [
                HostPort(
                    entry.host, _stepped(entry, "agent port", entry.agent_port, k, demo.replicas)
                )
                for k in range(demo.replicas)
            ]
        else:
            agents = [HostPort(entry.host, entry.agent_port)]
        instances += (
            Instance(
                entry,
                k + 1,
                len(agents),
                agent.host,
                _stepped(entry, "port", entry.port, k, len(agents)),
                agent.port,
            )
            for k, agent in enumerate(agents)
        )
    names: set[str] = set()
    for instance in instances:
        if instance.name in names:
            raise ConfigError(
                f"two demo processes would be called {instance.name!r}: a service of that name "
                "and an instance of a service of several; rename the service"
            )
        names.add(instance.name)
    return tuple(instances)


def _stepped(entry: ServiceEntry, what: str, first: int, k: int, count: int) -> int:
    """Port `first` of instance k + 1 of `count`; ConfigError when it leaves 1..65535."""
    port = first + k * REPLICA_PORT_STEP
    if not is_port(port):
        raise ConfigError(
            f"{instance_name(entry.name, k + 1, count)}'s {what} would be {first} + "
            f"{k} x {REPLICA_PORT_STEP} = {port}, outside {port_range()}: give "
            f"{entry.name} a lower {what} or fewer instances"
        )
    return port


def registry_of(instances: Iterable[Instance]) -> Registry:
    """The registry of the instances' agents: a service of several lists them as `instances`.

    Raises ConfigError when two agents share an address.
    """
    by_service: dict[str, list[Instance]] = {}
    for instance in instances:
        by_service.setdefault(instance.entry.name, []).append(instance)
    entries = []
    for group in by_service.values():
        first = group[0]
        several = tuple(instance.agent_address for instance in group) if len(group) > 1 else ()
        entries.append(
            dataclasses.replace(
                first.entry,
                host=first.host,
                port=first.port,
                agent_port=first.agent_port,
                instances=several,
            )
        )
    return Registry(entries)
