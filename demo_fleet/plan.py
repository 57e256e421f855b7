"""The demo's plan: every process, on which ports, with which misbehaviour.

`plan_fleet` applies `--port-offset` or `--free-ports` to the registry, the aggregator, the
gateway and the fake upstream; `FleetPlan.config_document` is the TOML handed to every child;
the `*_specs` methods list the processes for the supervisor. A plan with `credentials`
(`--secure`, `demo_fleet.secure`) runs every hop over mutual TLS with tokens: the children
read `[tls]` and `[auth]` from the config, the probes use the client certificate.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator import INGEST_SECTION, AggregatorSettings
from aggregator import SECTION as AGGREGATOR_SECTION
from demo_fleet.instances import Instance, demo_instances, instance_name, registry_of
from demo_fleet.ports import PortClaim, free_ports
from demo_fleet.probes import all_of, grpc_serving, http_ok
from demo_fleet.schedule import Schedule
from demo_fleet.secure import DemoCredentials
from demo_fleet.settings import DemoSettings
from demo_fleet.supervisor import ProcessSpec
from gateway import GatewaySettings
from mesh_common.addresses import HostPort, is_port, port_range
from mesh_common.config import MeshFile
from mesh_common.errors import ConfigError
from mesh_common.registry import SERVICES, Registry, ServiceEntry
from mesh_common.tls import PLAINTEXT, TlsSettings

AGGREGATOR_HEALTH_NAME = "metricsmesh.v1.AggregatorService"

DEMO_RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "ServiceDown",
        "figure": "status",
        "comparator": "!=",
        "threshold": "active",
        "for_seconds": 5,
        "severity": "critical",
        "annotations": {"summary": "{service} is {value}"},
    },
    {
        "name": "HighErrorRate",
        "figure": "error_rate",
        "comparator": ">",
        "threshold": 0.05,
        "clear_threshold": 0.03,
        "for_seconds": 30,
        "severity": "high",
        "annotations": {
            "summary": "{service} fails {value_percent} of its events (above {threshold_percent})"
        },
    },
    {
        "name": "SlowP99",
        "figure": "latency_p99_ms",
        "comparator": ">",
        "threshold": 2000,
        "for_seconds": 30,
        "severity": "warning",
        "annotations": {"summary": "{service} p99 is {value} ms (above {threshold} ms)"},
    },
)
"""The alert rules the demo runs with when the user's file has no `[alerts]` table: its
misbehaving services fire and resolve them while `make run` runs."""
UPSTREAM_NAME = "fake-upstream"
PUSHER_NAME = "pusher"


def dial(host: str, port: int) -> str:
    """`host:port` to dial a server bound to `host` (a wildcard means this machine)."""
    return str(HostPort(host, port).dialable())


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """What the demo makes services do on purpose, by service name."""

    restarting: str = ""
    not_serving: str = ""
    error: str = ""
    killed: str = ""
    """The instance the demo kills now and then (`log-aggregator#2`), by its process name."""
    notes: tuple[str, ...] = ()
    """Human-readable lines describing the above (or why a role is unfilled)."""


def misbehaviour(demo: DemoSettings, registry: Registry) -> Misbehaviour:
    """Which services misbehave, checked against the registry."""
    if not demo.misbehave:
        return Misbehaviour(notes=("every service behaves ([demo] misbehave = false)",))
    names = set(registry.names)
    notes: list[str] = []
    chosen: dict[str, str] = {}
    descriptions = {
        "restarting_service": (
            f"exits every {demo.up_seconds:g} s; the supervisor restarts it "
            f"{demo.down_seconds:g} s later (inactive meanwhile)"
        ),
        "not_serving_service": (
            f"reports NOT_SERVING for {demo.not_serving_for_seconds:g} s every "
            f"{demo.not_serving_every_seconds:g} s, first after "
            f"{demo.not_serving_after_seconds:g} s (inactive meanwhile)"
        ),
        "error_service": (
            f"answers GetEventRate with INTERNAL for {demo.error_for_seconds:g} s every "
            f"{demo.error_every_seconds:g} s, first after {demo.error_after_seconds:g} s "
            "(error meanwhile)"
        ),
    }
    for key, description in descriptions.items():
        name = getattr(demo, key)
        if not name:
            continue
        if name not in names:
            notes.append(f"[demo] {key} = {name!r} is not in the registry: nobody takes that role")
            continue
        chosen[key] = name
        notes.append(f"{name} {description}")
    killed = _killed_instance(demo, registry)
    if killed:
        entry = registry.by_name(demo.replicated_service)
        up = len(entry.addresses) - 1
        notes.append(
            f"{killed} is killed (SIGKILL, like a crashed pod) {demo.replica_up_seconds:g} s "
            f"after each start; the supervisor restarts it {demo.replica_down_seconds:g} s "
            f"later ({entry.name} stays active, {up}/{up + 1} instances meanwhile)"
        )
    return Misbehaviour(
        restarting=chosen.get("restarting_service", ""),
        not_serving=chosen.get("not_serving_service", ""),
        error=chosen.get("error_service", ""),
        killed=killed,
        notes=tuple(notes),
    )


def _killed_instance(demo: DemoSettings, registry: Registry) -> str:
    """The last instance of the replicated service, when it runs several ('' otherwise)."""
    if demo.replicated_service not in registry.names:
        return ""
    count = len(registry.by_name(demo.replicated_service).addresses)
    return instance_name(demo.replicated_service, count, count) if count > 1 else ""


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """Every port and setting of one demo run."""

    instances: tuple[Instance, ...]
    """Every service process, one per instance, in registry order."""
    aggregator: AggregatorSettings
    gateway: GatewaySettings
    upstream_port: int
    demo: DemoSettings
    tables: Mapping[str, Any]
    """The user's mesh file as parsed, copied into the config handed to the children."""
    log_level: str = "INFO"
    """`--log-level` of the services and the aggregator (the gateway logs warnings only)."""
    log_format: str = "text"
    """`--log-format` of every child that logs (text or json lines, in its log file)."""
    otlp_port: int = -1
    """The aggregator's OTLP/gRPC port (`[ingest] otlp_port`; -1: none)."""
    credentials: DemoCredentials | None = None
    """`--secure`: the certificates and secrets written into the run directory."""

    @property
    def services(self) -> Registry:
        """The registry of the instances: what the aggregator calls (`registry_of`)."""
        return registry_of(self.instances)

    @property
    def client_tls(self) -> TlsSettings:
        """The `[tls]` the demo's own probes dial with (plaintext without credentials)."""
        return self.credentials.client_tls if self.credentials else PLAINTEXT

    @property
    def probe_token(self) -> str:
        """The bearer token of the probes that need one ('' without credentials)."""
        return self.credentials.mesh_token if self.credentials else ""

    @property
    def upstream_url(self) -> str:
        """Base URL of the fake upstream."""
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def aggregator_address(self) -> str:
        """Where to dial the aggregator."""
        return dial(self.aggregator.host, self.aggregator.port)

    @property
    def gateway_url(self) -> str:
        """Base URL of the gateway (the dashboard): https with credentials."""
        scheme = "https" if self.credentials else "http"
        return f"{scheme}://{dial(self.gateway.host, self.gateway.port)}"

    def claims(self) -> list[PortClaim]:
        """Every port the demo will listen on, with its owner, in start order."""
        claims = [PortClaim("127.0.0.1", self.upstream_port, f"{UPSTREAM_NAME} (HTTP)")]
        for instance in self.instances:
            host, name = instance.host, instance.name
            claims.append(PortClaim(host, instance.port, f"{name} (HTTP port)"))
            claims.append(PortClaim(host, instance.agent_port, f"{name} (agent port)"))
        claims.append(PortClaim(self.aggregator.host, self.aggregator.port, "the aggregator"))
        if self.otlp_port > 0:
            claims.append(PortClaim(self.aggregator.host, self.otlp_port, "the aggregator (OTLP)"))
        claims.append(PortClaim(self.gateway.host, self.gateway.port, "the gateway"))
        return claims

    def _instance_rules(self) -> list[dict[str, Any]]:
        """InstanceDown for the replicated service: a killed replica leaves its row active."""
        demo = self.demo
        replicated = [e for e in self.services if e.name == demo.replicated_service]
        if demo.replicas < 2 or not replicated or len(replicated[0].addresses) < 2:
            return []  # no replicas, or a registry of the user's without that service
        return [
            {
                "name": "InstanceDown",
                "figure": "instances_up",
                "comparator": "<",
                "threshold": demo.replicas,
                "for_seconds": 5,
                "severity": "warning",
                "services": [demo.replicated_service],
                "annotations": {
                    "summary": f"{{service}} has {{value}} of {demo.replicas} instances up"
                },
            }
        ]

    def config_document(
        self, state_dir: Path | None = None, history: Path | None = None
    ) -> dict[str, Any]:
        """The mesh config of every child: the user's, with our ports (and our security).

        With `credentials`, the demo's `[tls]` and `[auth]` replace the user's. Without an
        `[alerts]` table of the user's, the demo's own rules apply (DEMO_RULES),
        with their state in `state_dir` (the run directory's). Without a `[history]` table of
        the user's, the history is the file `history` (kept from one demo to the next, so a
        restarted demo still shows the past).
        """
        document = copy.deepcopy(dict(self.tables))
        if self.credentials is not None:
            document.update(self.credentials.tables())
        if "history" not in document and history is not None:
            document["history"] = {"path": str(history)}
        if "alerts" not in document:
            document["alerts"] = {
                "dashboard_url": f"{self.gateway_url}/",
                "rules": [dict(rule) for rule in DEMO_RULES] + self._instance_rules(),
                **({"state_dir": str(state_dir)} if state_dir is not None else {}),
            }
        document.setdefault("aggregator", {})["port"] = self.aggregator.port
        document.setdefault("ingest", {})["otlp_port"] = self.otlp_port
        gateway = document.setdefault("gateway", {})
        gateway["port"] = self.gateway.port
        if self.credentials is not None:
            gateway["https_client_auth"] = False  # browsers sign in; no certificate to import
        gateway["aggregator"] = self.aggregator_address
        document["services"] = [_registry_table(entry) for entry in self.services]
        return document

    def service_specs(self, config_path: Path, python: str = sys.executable) -> list[ProcessSpec]:
        """The fake upstream and one process per service instance (`[tls]` from the config)."""
        chaos = misbehaviour(self.demo, self.services)
        return [
            self._upstream_spec(python),
            *(self._service_spec(each, chaos, python, config_path) for each in self.instances),
        ]

    def _upstream_spec(self, python: str) -> ProcessSpec:
        argv = (python, "-m", "demo_fleet.upstream", "--port", str(self.upstream_port))
        return ProcessSpec(
            name=UPSTREAM_NAME,
            argv=argv,
            ready=http_ok(f"{self.upstream_url}/healthz"),
            summary=f"http {dial('127.0.0.1', self.upstream_port)}",
            restart_delay=1.0,
        )

    def _service_spec(
        self, instance: Instance, chaos: Misbehaviour, python: str, config_path: Path
    ) -> ProcessSpec:
        http = dial(instance.host, instance.port)
        agent = dial(instance.host, instance.agent_port)
        restart_delay = 2.0
        if instance.entry.name == chaos.restarting:
            restart_delay = self.demo.down_seconds
        killed = instance.name == chaos.killed
        if killed:
            restart_delay = self.demo.replica_down_seconds
        argv = self._service_argv(instance, chaos, python)
        return ProcessSpec(
            name=instance.name,
            argv=(*argv, "--config", str(config_path), "--parent-pid", str(os.getpid())),
            ready=all_of(
                grpc_serving(agent, any_status=True, tls=self.client_tls),
                http_ok(f"http://{http}/healthz"),
            ),
            summary=f"http {http}  agent {agent}",
            restart_delay=restart_delay,
            kill_after=self.demo.replica_up_seconds if killed else None,
        )

    def _service_argv(self, instance: Instance, chaos: Misbehaviour, python: str) -> list[str]:
        """`python -m demo_fleet.service` with the instance's ports and its misbehaviour.

        Each instance of a service does its share of the service's load (1/count).
        """
        demo, entry = self.demo, instance.entry
        argv = [
            python,
            "-m",
            "demo_fleet.service",
            "--name",
            entry.name,
            "--instance-name",
            instance.name,
            "--type",
            entry.type,
            "--host",
            instance.host,
            "--port",
            str(instance.port),
            "--agent-port",
            str(instance.agent_port),
            "--load-scale",
            repr(demo.load_scale / instance.count),
            "--log-level",
            self.log_level,
            "--log-format",
            self.log_format,
        ]
        if entry.data_source:
            argv += ["--data-source", entry.data_source, "--upstream", self.upstream_url]
        if entry.name == chaos.restarting:
            argv += ["--exit-after", repr(demo.up_seconds)]
        if entry.name == chaos.not_serving:
            schedule = Schedule(
                demo.not_serving_after_seconds,
                demo.not_serving_every_seconds,
                demo.not_serving_for_seconds,
            )
            argv += ["--not-serving", schedule.text()]
        if entry.name == chaos.error:
            schedule = Schedule(
                demo.error_after_seconds, demo.error_every_seconds, demo.error_for_seconds
            )
            argv += ["--error", schedule.text()]
        return argv

    def pusher_spec(self, config_path: Path, python: str = sys.executable) -> ProcessSpec | None:
        """The process pushing seed 003 metrics, seed 004 events and OTLP.

        It reads `[tls]` and `[auth] client_token` from the config. None without an OTLP port
        to push to (`[ingest] otlp_port` -1 or 0).
        """
        if self.otlp_port <= 0:
            return None
        otlp = dial(self.aggregator.host, self.otlp_port)
        return ProcessSpec(
            name=PUSHER_NAME,
            argv=(
                python,
                "-m",
                "demo_fleet.pusher",
                "--gateway",
                self.gateway_url,
                "--otlp",
                otlp,
                "--config",
                str(config_path),
                "--parent-pid",
                str(os.getpid()),
            ),
            # Ready once its OTLP row is in: every way of pushing has worked once by then.
            ready=http_ok(
                f"{self.gateway_url}/metrics/services/health",
                '"checkout"',
                tls=self.client_tls,
                token=self.probe_token,
            ),
            summary=f"pushes to {self.gateway_url} and OTLP {otlp}",
            restart_delay=2.0,
        )

    def mesh_specs(self, config_path: Path, python: str = sys.executable) -> list[ProcessSpec]:
        """The aggregator and the gateway, both reading the generated config file."""
        return [
            ProcessSpec(
                name="aggregator",
                argv=(
                    python,
                    "-m",
                    "aggregator",
                    "--config",
                    str(config_path),
                    "--host",
                    self.aggregator.host,
                    "--port",
                    str(self.aggregator.port),
                    "--otlp-port",
                    str(self.otlp_port),
                    "--log-level",
                    self.log_level,
                    "--log-format",
                    self.log_format,
                ),
                ready=grpc_serving(
                    self.aggregator_address, AGGREGATOR_HEALTH_NAME, tls=self.client_tls
                ),
                summary=f"grpc {self.aggregator_address}",
                restart_delay=2.0,
            ),
            ProcessSpec(
                name="gateway",
                argv=(
                    python,
                    "-m",
                    "gateway",
                    "--config",
                    str(config_path),
                    "--host",
                    self.gateway.host,
                    "--port",
                    str(self.gateway.port),
                    "--aggregator",
                    self.aggregator_address,
                    "--log-level",
                    "warning",
                    "--log-format",
                    self.log_format,
                ),
                ready=http_ok(
                    f"{self.gateway_url}/health", tls=self.client_tls, token=self.probe_token
                ),
                summary=self.gateway_url + "/",
                restart_delay=2.0,
            ),
        ]


def _registry_table(entry: ServiceEntry) -> dict[str, Any]:
    """The `[[services]]` table of `entry`: `host` and `agent_port`, or its `instances`."""
    if entry.instances:
        agents: dict[str, Any] = {"instances": list(entry.instances)}
    else:
        agents = {"host": entry.host, "agent_port": entry.agent_port}
    return {
        "name": entry.name,
        "port": entry.port,
        **agents,
        "type": entry.type,
        **({"data_source": entry.data_source} if entry.data_source else {}),
    }


def plan_fleet(
    mesh: MeshFile,
    gateway: GatewaySettings,
    demo: DemoSettings,
    *,
    port_offset: int = 0,
    use_free_ports: bool = False,
    log_level: str = "INFO",
    log_format: str = "text",
) -> FleetPlan:
    """Apply the port choice to everything the demo starts.

    `port_offset` adds to every configured port; `use_free_ports` picks free ones instead
    (for tests and crowded machines). `log_level` and `log_format` are handed to the
    children. Raises ConfigError when an offset leaves 1..65535 or a server is configured
    on port 0.
    """
    ports = _Ports(
        instances=demo_instances(mesh.read(SERVICES), demo),
        aggregator=mesh.read(AGGREGATOR_SECTION),
        gateway=gateway,
        upstream=demo.upstream_port,
        otlp=mesh.read(INGEST_SECTION).otlp_port,
    )
    if use_free_ports:
        ports = ports.on_free_ports()
    elif port_offset:
        ports = ports.shifted(port_offset)
    ports.check_fixed()
    registry_of(ports.instances)  # ConfigError when two agents share an address
    aggregator = ports.aggregator
    return FleetPlan(
        instances=ports.instances,
        aggregator=aggregator,
        gateway=dataclasses.replace(
            ports.gateway, aggregator=dial(aggregator.host, aggregator.port)
        ),
        upstream_port=ports.upstream,
        demo=demo,
        tables=mesh.tables,
        log_level=log_level,
        log_format=log_format,
        otlp_port=ports.otlp,
    )


@dataclass(frozen=True, slots=True)
class _Ports:
    """The ports of a plan in the making: the instances, the aggregator, gateway and upstream."""

    instances: tuple[Instance, ...]
    aggregator: AggregatorSettings
    gateway: GatewaySettings
    upstream: int
    otlp: int = -1
    """The aggregator's OTLP port; -1 (none) stays -1, 0 (any free one) is not shifted."""

    def on_free_ports(self) -> _Ports:
        """Every port replaced by one that is free now."""
        ports = iter(free_ports(2 * len(self.instances) + 4))
        return _Ports(
            instances=tuple(
                instance.moved(port=next(ports), agent_port=next(ports))
                for instance in self.instances
            ),
            aggregator=dataclasses.replace(self.aggregator, port=next(ports)),
            gateway=dataclasses.replace(self.gateway, port=next(ports)),
            upstream=next(ports),
            otlp=self.otlp if self.otlp == -1 else next(ports),
        )

    def shifted(self, offset: int) -> _Ports:
        """Every port plus `offset`; ConfigError naming the first one that leaves 1..65535."""

        def shift(port: int, what: str) -> int:
            moved = port + offset
            if not is_port(moved):
                raise ConfigError(
                    f"--port-offset {offset} moves {what} from {port} to {moved}, outside "
                    f"{port_range()}"
                )
            return moved

        return _Ports(
            instances=tuple(
                instance.moved(
                    port=shift(instance.port, f"{instance.name}'s port"),
                    agent_port=shift(instance.agent_port, f"{instance.name}'s agent port"),
                )
                for instance in self.instances
            ),
            aggregator=dataclasses.replace(
                self.aggregator, port=shift(self.aggregator.port, "the aggregator's port")
            ),
            gateway=dataclasses.replace(
                self.gateway, port=shift(self.gateway.port, "the gateway's port")
            ),
            upstream=shift(self.upstream, "the fake upstream's port"),
            otlp=self.otlp if self.otlp <= 0 else shift(self.otlp, "the aggregator's OTLP port"),
        )

    def check_fixed(self) -> None:
        """ConfigError when a server the others dial is configured on port 0."""
        for what, port in (
            ("the aggregator", self.aggregator.port),
            ("the gateway", self.gateway.port),
            ("the fake upstream", self.upstream),
        ):
            if port == 0:
                raise ConfigError(
                    f"{what} is configured on port 0; the demo needs fixed ports to wire the "
                    "processes together: set one, or use --free-ports"
                )
