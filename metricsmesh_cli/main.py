"""Entry point of the `metrics-mesh` command: demo, servers, snapshot, top, alerts, query.

Each subcommand is declared by one small function below. `aggregator` and `gateway` are built
from the components' own declarations (`DESCRIPTION`, `add_arguments()`, `epilog()` and `run()`
of `python -m aggregator` / `python -m gateway`), so the two command lines cannot drift apart.
A subcommand's options are only declared when that subcommand is run or asked for `--help`:
`metrics-mesh snapshot` does not import the gateway, nor `metrics-mesh gateway` the demo.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from mesh_common.config import load_mesh_file
from mesh_common.errors import MeshError, exit_status
from mesh_common.options import (
    ENV_HELP,
    HelpFormatter,
    add_config_option,
    add_logging_options,
    add_version_option,
    configure_logging,
    count,
    host_port,
    non_negative_seconds,
    positive_seconds,
)

Handler = Callable[[argparse.Namespace], int]
"""What a subcommand runs: the parsed options in, the exit status out."""

DESCRIPTION = (
    "A gRPC metrics mesh for fleets of Python services: run the demo fleet, the aggregator or "
    "the gateway, and look at the fleet from the terminal."
)


class ComponentCommand(Protocol):
    """What a component's `__main__` module offers to build a subcommand from."""

    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the component's options on `parser`."""
        ...

    def epilog(self) -> str:
        """The help text's epilog (configuration sources and the component's keys)."""
        ...

    def run(self, args: argparse.Namespace) -> int:
        """Run the component with the parsed options; returns the exit status."""
        ...


def _from_component(parser: argparse.ArgumentParser, component: ComponentCommand) -> None:
    parser.description = component.DESCRIPTION
    parser.epilog = component.epilog()
    component.add_arguments(parser)
    parser.set_defaults(handler=component.run)


# --- one declaration per subcommand ---------------------------------------------------------


def declare_demo(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh demo`: the options of the demo fleet and the `[demo]` keys."""
    from demo_fleet.settings import SECTION

    parser.description = (
        "Start the services of the registry (each a FastAPI process with the agent embedded and "
        "a workload of its own), a fake upstream, the aggregator and the gateway; print the "
        "dashboard URL, the gRPC addresses and grpcurl commands; stop every process on Ctrl-C "
        "or SIGTERM. One service runs replicas, one process per instance, and a few services "
        "misbehave on purpose (see [demo])."
    )
    parser.epilog = ENV_HELP + "\n" + SECTION.help_text()
    add_config_option(parser)
    ports = parser.add_mutually_exclusive_group()
    ports.add_argument(
        "--port-offset",
        type=int,
        default=0,
        metavar="N",
        help="add N to every configured port (services, agents, aggregator, gateway, upstream)",
    )
    ports.add_argument(
        "--free-ports",
        action="store_true",
        help="pick free ports for everything instead of the configured ones",
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where logs and the generated config go (default: [demo] run_dir, else a new "
        "temporary directory)",
    )
    parser.add_argument(
        "--load-scale",
        type=non_negative_seconds,
        metavar="X",
        help="multiply every service's event rates by X (overrides [demo] load_scale)",
    )
    parser.add_argument(
        "--no-misbehave",
        action="store_true",
        help="no service misbehaves on purpose (overrides [demo] misbehave)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="mutual TLS on every hop and a bearer token on every call: writes a CA, "
        "certificates, a token and a login into the run directory, prints where they are and "
        "grpcurl and curl lines that use them (replaces the file's [tls] and [auth])",
    )
    add_logging_options(parser)
    parser.set_defaults(handler=run_demo_command)


def declare_aggregator(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh aggregator`: exactly `python -m aggregator`."""
    import aggregator.__main__ as component

    _from_component(parser, component)


def declare_gateway(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh gateway`: exactly `python -m gateway`."""
    import gateway.__main__ as component

    _from_component(parser, component)


def _add_aggregator_options(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument(
        "--aggregator",
        type=host_port,
        metavar="HOST:PORT",
        help="the aggregator to ask (default: [aggregator] host:port of the config, "
        "env METRICS_MESH_AGGREGATOR_HOST / METRICS_MESH_AGGREGATOR_PORT)",
    )


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    _add_aggregator_options(parser)
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="TYPE",
        help="only services of this type (core, data, analysis, ai, ...); repeatable",
    )
    parser.add_argument(
        "--service",
        dest="services",
        action="append",
        default=[],
        metavar="NAME",
        help="only this service; repeatable (an unknown name is an error)",
    )


def declare_snapshot(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh snapshot`: one GetSnapshot as a table or JSON."""
    parser.description = (
        "Ask the aggregator for one snapshot (GetSnapshot) and print it as a table, with "
        "-o json as the REST endpoint's JSON (the same field names), or with -o protobuf-json "
        "in protobuf's JSON mapping."
    )
    parser.epilog = ENV_HELP
    _add_target_options(parser)
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "protobuf-json"),
        default="table",
        help="output format (default table; json: the REST body's names)",
    )
    parser.add_argument(
        "--max-age",
        type=non_negative_seconds,
        metavar="SECONDS",
        help="oldest snapshot accepted; an older one makes the aggregator run a round first",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="call deadline (default 5)",
    )
    parser.set_defaults(handler=run_snapshot_command)


def declare_top(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh top`: a live table from StreamSnapshots."""
    parser.description = (
        "Subscribe to the aggregator (StreamSnapshots) and show the fleet as a table refreshed "
        "in place, busiest service first, statuses in colour. Ctrl-C quits."
    )
    parser.epilog = ENV_HELP
    _add_target_options(parser)
    parser.add_argument(
        "--interval",
        type=non_negative_seconds,
        default=0.0,
        metavar="SECONDS",
        help="least time between two refreshes (default: every snapshot)",
    )
    parser.add_argument(
        "--count",
        type=count,
        metavar="N",
        help="quit after N refreshes (default: run until Ctrl-C)",
    )
    parser.set_defaults(handler=run_top_command)


def declare_alerts(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh alerts`: one ListAlerts as a table or JSON."""
    parser.description = (
        "Ask the aggregator for its alerts (ListAlerts): pending and firing, firing first, as "
        "a table, with -o json as the REST endpoint's JSON (the body of the gateway's GET "
        "/api/v1/alerts/active, the same field names), or with -o protobuf-json in protobuf's "
        "JSON mapping."
    )
    parser.epilog = ENV_HELP
    _add_aggregator_options(parser)
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "protobuf-json"),
        default="table",
        help="output format (default table; json: the REST body's names)",
    )
    parser.add_argument(
        "--all",
        dest="include_resolved",
        action="store_true",
        help="also the alerts resolved in the last 15 minutes",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="call deadline (default 5)",
    )
    parser.set_defaults(handler=run_alerts_command)


QUERY_EXAMPLES = """examples:
  metrics-mesh query 'events_per_second{service="weather-api"}' --since 6h --step 5m
  metrics-mesh query 'latency_p99_ms{service=~"weather.*", kind=""}' --since 1h --sparkline
  metrics-mesh query 'error_rate{service=""}' --start 2026-01-01T00:00:00Z --step 1h \\
      --end 2026-01-02T00:00:00Z
  metrics-mesh query status --since 30m -o json

A selector is a figure (events_per_second, error_rate, latency_p50_ms, latency_p95_ms,
latency_p99_ms, latency_max_ms, latency_avg_ms, events, errors, errors_per_second, status,
availability, call_latency_ms, cpu_usage_percent) with matchers on service, type and kind
(=, !=, =~, !~); service="" is the fleet, kind="" a service as a whole.
"""


def declare_query(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh query SELECTOR`: figures over time from the history (QueryRange)."""
    from mesh_common.prometheus_api import parse_duration, parse_time

    parser.description = (
        "Ask the aggregator's history for a selector's figures over a range (QueryRange) and "
        "print one row per series (points, min, mean, max, last), a sparkline per series with "
        "--sparkline, or with -o json the gateway's Prometheus-style answer "
        "(GET /api/v1/metrics/query/range). Exits 2 when the aggregator refuses the query, 1 "
        "when it cannot answer."
    )
    parser.epilog = QUERY_EXAMPLES + "\n" + ENV_HELP
    _add_aggregator_options(parser)
    parser.add_argument("selector", metavar="SELECTOR", help="a series selector (see examples)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--since",
        type=_parsed(parse_duration, "since"),
        metavar="DURATION",
        help="the range ends now and starts this long before (e.g. 6h, 30m; default 1h)",
    )
    when.add_argument(
        "--start", type=_parsed(parse_time, "start"), metavar="TIME",
        help="the range's start: RFC 3339 or Unix seconds",
    )  # fmt: skip
    parser.add_argument(
        "--end", type=_parsed(parse_time, "end"), metavar="TIME",
        help="the range's end: RFC 3339 or Unix seconds (default now)",
    )  # fmt: skip
    parser.add_argument(
        "--step", type=_parsed(parse_duration, "step"), metavar="DURATION",
        help="time between points, and the window each covers (e.g. 15s, 5m, 1h30m; default "
        "about a hundredth of the range, as the tier holding the start allows)",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output", choices=("table", "json"), default="table",
        help="a table (default), or Prometheus's HTTP API JSON",
    )  # fmt: skip
    parser.add_argument(
        "--sparkline", action="store_true", help="add each series' trend as a sparkline"
    )
    parser.add_argument(
        "--timeout", type=positive_seconds, default=30.0, metavar="SECONDS",
        help="call deadline (default 30)",
    )  # fmt: skip
    parser.set_defaults(handler=run_query_command)


def _parsed(parse: Callable[[str, str], int], name: str) -> Callable[[str], int]:
    """An argparse type from a Prometheus parser: a ParamError becomes a usage error."""
    from mesh_common.errors import ParamError

    def read(text: str) -> int:
        try:
            return parse(name, text)
        except ParamError as error:
            raise argparse.ArgumentTypeError(error.reason) from None

    return read


def declare_auth(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh auth hash-password`: a password hash for the `[auth]` table."""
    from metricsmesh_cli.auth import declare

    declare(parser)


def declare_config(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh config check [FILE]`: validate a mesh file and show what is used."""
    parser.description = "Look at a mesh configuration file before the programs read it."
    parser.epilog = ENV_HELP
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate every table of FILE and list the settings each component will use",
        formatter_class=HelpFormatter,
        description=(
            "Read FILE as every program would and check every table ([aggregator], [alerts] "
            "and its rules, [demo], [gateway], [[services]]). With no error, list the "
            "effective settings per component, each marked default, file or env (a "
            "METRICS_MESH_* override), then the registry's services and the alert rules; "
            "otherwise print each error (file, table, key, problem) and exit with status 2. "
            "Without FILE: $METRICS_MESH_CONFIG, else the built-in defaults."
        ),
        epilog=ENV_HELP,
    )
    add_version_option(check)
    check.add_argument(
        "file", nargs="?", metavar="FILE", help="the mesh TOML file (default: $METRICS_MESH_CONFIG)"
    )
    check.set_defaults(handler=run_config_check_command)


def declare_certs(parser: argparse.ArgumentParser) -> None:
    """`metrics-mesh certs DIR --hosts ...`: a local CA and certificates for trying TLS."""
    parser.description = (
        "Write a local CA (ca.pem, ca-key.pem), a server certificate and key valid for the "
        "given hosts (server.pem, server-key.pem; also a client certificate, for a server "
        "that dials, like the aggregator), the gateway's (gateway.pem, gateway-key.pem: the "
        "same hosts, named 'gateway' for [aggregator] trusted_clients) and a client "
        "certificate and key (client.pem, client-key.pem) into DIR, then print the [tls] "
        "tables that use them. For trying TLS and mutual TLS out; not a production CA. "
        "Existing files are overwritten."
    )
    parser.epilog = ENV_HELP
    add_config_option(parser)
    parser.add_argument("directory", metavar="DIR", help="where to write the files")
    parser.add_argument(
        "--hosts",
        type=_host_list,
        metavar="HOST,...",
        help="IP addresses and DNS names the server certificate is valid for (default: "
        "127.0.0.1, ::1, localhost and the hosts of the config's [aggregator], [gateway] and "
        "[[services]])",
    )
    parser.set_defaults(handler=run_certs_command)


def _host_list(text: str) -> tuple[str, ...]:
    hosts = tuple(part.strip() for part in text.split(",") if part.strip())
    if not hosts:
        raise argparse.ArgumentTypeError("give at least one host")
    return hosts


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "demo": (
        "run the demo fleet: 15 services, the aggregator and the gateway (Ctrl-C stops all)",
        declare_demo,
    ),
    "aggregator": ("run the aggregator (same as python -m aggregator)", declare_aggregator),
    "gateway": (
        "run the gateway: REST, SSE, WebSocket, /metrics, dashboard (same as python -m gateway)",
        declare_gateway,
    ),
    "snapshot": (
        "print one snapshot of the fleet (GetSnapshot) as a table or JSON",
        declare_snapshot,
    ),
    "top": ("a live table of the fleet, sorted by rate (StreamSnapshots)", declare_top),
    "alerts": (
        "print the pending and firing alerts (ListAlerts) as a table or JSON",
        declare_alerts,
    ),
    "query": (
        "figures over time from the history (QueryRange) as a table, sparklines or JSON",
        declare_query,
    ),
    "certs": (
        "certs DIR --hosts ...: write a local CA and TLS certificates, print the [tls] table",
        declare_certs,
    ),
    "config": (
        "config check [FILE]: validate a mesh file, list what each component will use",
        declare_config,
    ),
    "auth": ("auth hash-password: a password hash for [[auth.users]]", declare_auth),
}
"""Every subcommand: its one-line help (for `metrics-mesh --help`) and its declaration."""


def build_parser(declared: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; `declared` limits which subcommands get their options.

    By default every subcommand is declared in full. The subcommands left out are still
    listed (with their one-line help) but import nothing of their component.
    """
    parser = argparse.ArgumentParser(
        prog="metrics-mesh", description=DESCRIPTION, epilog=ENV_HELP, formatter_class=HelpFormatter
    )
    add_version_option(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (summary, declare) in SUBCOMMANDS.items():
        subparser = commands.add_parser(name, help=summary, formatter_class=HelpFormatter)
        if declared is None or name in declared:
            declare(subparser)
        add_version_option(subparser)
    return parser


# --- handlers ---------------------------------------------------------------------------------


def run_demo_command(args: argparse.Namespace) -> int:
    """Read the mesh file once, plan the fleet from it and run it until Ctrl-C."""
    from demo_fleet.plan import plan_fleet
    from demo_fleet.run import run_demo
    from demo_fleet.secure import check_mesh
    from demo_fleet.settings import SECTION as DEMO
    from gateway import SECTION as GATEWAY
    from mesh_common.registry import SERVICES

    configure_logging(args)
    mesh = load_mesh_file(args.config)
    check_mesh(mesh, secure=args.secure)
    demo = mesh.read(DEMO)
    if args.load_scale is not None:
        demo = dataclasses.replace(demo, load_scale=args.load_scale)
    if args.no_misbehave:
        demo = dataclasses.replace(demo, misbehave=False)
    gateway = mesh.read(GATEWAY, services_configured=len(mesh.read(SERVICES)))
    plan = plan_fleet(
        mesh,
        gateway,
        demo,
        port_offset=args.port_offset,
        use_free_ports=args.free_ports,
        log_level=args.log_level,
        log_format=args.log_format,
    )
    return run_demo(plan, run_dir=args.run_dir, secure=args.secure)


def run_snapshot_command(args: argparse.Namespace) -> int:
    """Fetch one snapshot and print it."""
    from rich.console import Console

    from mesh_common.tls import SECTION as TLS
    from metricsmesh_cli.client import aggregator_target, client_token
    from metricsmesh_cli.snapshot import run_snapshot

    mesh = load_mesh_file(args.config)
    return run_snapshot(
        aggregator_target(mesh, args.aggregator),
        token=client_token(mesh),
        output=args.output,
        console=Console(),
        errors=Console(stderr=True),
        services=args.services,
        types=args.types,
        max_age=args.max_age,
        timeout=args.timeout,
        tls=mesh.read(TLS),
    )


def run_top_command(args: argparse.Namespace) -> int:
    """Show the live table until Ctrl-C, the stream's end or `--count` frames."""
    from rich.console import Console

    from mesh_common.tls import SECTION as TLS
    from metricsmesh_cli.client import aggregator_target, client_token
    from metricsmesh_cli.top import run_top

    mesh = load_mesh_file(args.config)
    return run_top(
        aggregator_target(mesh, args.aggregator),
        Console(),
        Console(stderr=True),
        services=args.services,
        types=args.types,
        interval=args.interval,
        count=args.count,
        token=client_token(mesh),
        tls=mesh.read(TLS),
    )


def run_alerts_command(args: argparse.Namespace) -> int:
    """Fetch the alerts and print them."""
    from rich.console import Console

    from mesh_common.tls import SECTION as TLS
    from metricsmesh_cli.alerts import run_alerts
    from metricsmesh_cli.client import aggregator_target, client_token

    mesh = load_mesh_file(args.config)
    return run_alerts(
        aggregator_target(mesh, args.aggregator),
        token=client_token(mesh),
        output=args.output,
        console=Console(),
        errors=Console(stderr=True),
        include_resolved=args.include_resolved,
        timeout=args.timeout,
        tls=mesh.read(TLS),
    )


def run_query_command(args: argparse.Namespace) -> int:
    """Ask the history for the range and print it."""
    import time

    from rich.console import Console

    from mesh_common.tls import SECTION as TLS
    from metricsmesh_cli.client import aggregator_target, client_token
    from metricsmesh_cli.query import RangeAsked, run_query

    now_ms = int(time.time() * 1000)
    end_ms = args.end if args.end is not None else now_ms
    if args.start is not None:
        start_ms = args.start
    else:
        start_ms = end_ms - (args.since if args.since is not None else 3_600_000)
    mesh = load_mesh_file(args.config)
    return run_query(
        aggregator_target(mesh, args.aggregator),
        RangeAsked(args.selector, start_ms, end_ms, args.step or 0),
        output=args.output,
        sparkline=args.sparkline,
        console=Console(),
        errors=Console(stderr=True),
        timeout=args.timeout,
        token=client_token(mesh),
        tls=mesh.read(TLS),
    )


def run_certs_command(args: argparse.Namespace) -> int:
    """Write the CA and certificates and say what was written and how to use it."""
    from metricsmesh_cli.certs import mesh_hosts, write_certificates

    hosts = args.hosts or mesh_hosts(load_mesh_file(args.config))
    written = write_certificates(args.directory, hosts)
    print(f"wrote into {args.directory} (server certificate for {', '.join(hosts)}):")
    for path in (written.ca, written.ca_key, written.server, written.server_key):
        print(f"  {path}")
    for path in (written.gateway, written.gateway_key, written.client, written.client_key):
        print(f"  {path}")
    print("\nservers and the aggregator (mesh file):\n")
    print(written.tls_lines())
    print(
        'the gateway (its slots on the aggregator: [aggregator] trusted_clients = ["gateway"]):\n'
    )
    print(written.tls_lines(gateway=True))
    print("a client (CLI, grpcurl-like tools) under mutual TLS:\n")
    print(written.tls_lines(client=True))
    print(
        f"grpcurl -cacert {written.ca} -cert {written.client} -key {written.client_key} "
        "HOST:PORT list"
    )
    return 0


def run_config_check_command(args: argparse.Namespace) -> int:
    """Check the file and print the listing or its errors."""
    from metricsmesh_cli.config_check import run_config_check

    return run_config_check(args.file, sys.stdout, sys.stderr)


def _subcommand_of(argv: Sequence[str]) -> str:
    """The subcommand a command line names: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `metrics-mesh` command line and return its exit status.

    A usage or configuration error exits with 2, a port that is already in use with 3
    (`mesh_common.errors.exit_status`).
    """
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser({_subcommand_of(words)}).parse_args(words)
    handler: Handler = args.handler
    try:
        return handler(args)
    except MeshError as error:
        print(f"metrics-mesh {args.command}: {error}", file=sys.stderr)
        return exit_status(error)


if __name__ == "__main__":
    sys.exit(main())
