"""Entry point of the `metrics-mesh` console script: demo, aggregator, gateway, snapshot, top."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from aggregator import ConfigError, MeshConfig, load_config

CONFIG_ENV = "METRICS_MESH_CONFIG"

ENV_HELP = f"""\
configuration:
  One TOML file configures every part (see examples/metrics-mesh.toml); --config FILE
  names it, or ${CONFIG_ENV}. Without one, the built-in defaults apply (the 15-service
  registry, aggregator on 127.0.0.1:50100, gateway on 127.0.0.1:8000).
  Environment variables override keys of the file: METRICS_MESH_<SECTION>_<KEY>, e.g.
    METRICS_MESH_AGGREGATOR_PORT=50200   METRICS_MESH_AGGREGATOR_INTERVAL_SECONDS=2
    METRICS_MESH_GATEWAY_PORT=8080       METRICS_MESH_GATEWAY_AGGREGATOR=127.0.0.1:50200
    METRICS_MESH_DEMO_LOAD_SCALE=0.5     METRICS_MESH_DEMO_MISBEHAVE=false
  Command-line options override both.
"""


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as argparse does, but keeps multi-line text (the epilogs) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _non_negative(text: str) -> float:
    """Parse a number of seconds that is 0 or more (argparse `type=`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _positive(text: str) -> float:
    """Parse a number of seconds that is more than 0 (argparse `type=`)."""
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _count(text: str) -> int:
    """Parse a count of 1 or more (argparse `type=`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get(CONFIG_ENV) or None,
        help=f"the mesh TOML file (env ${CONFIG_ENV}; default: built-in defaults)",
    )


def _target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--aggregator",
        metavar="HOST:PORT",
        help="the aggregator to ask (default: [aggregator] host:port of the config, "
        "env METRICS_MESH_AGGREGATOR_HOST / METRICS_MESH_AGGREGATOR_PORT)",
    )
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


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every subcommand with its options and environment overrides."""
    formatter = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="metrics-mesh",
        description="A gRPC metrics mesh for fleets of Python services: run the demo fleet, "
        "the aggregator or the gateway, and look at the fleet from the terminal.",
        epilog=ENV_HELP,
        formatter_class=formatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run the demo fleet: 15 services, the aggregator and the gateway (Ctrl-C stops all)",
        description="Start the services of the registry (each a FastAPI process with the agent "
        "embedded and a workload of its own), a fake upstream, the aggregator and the gateway; "
        "print the dashboard URL, the gRPC addresses and grpcurl commands; stop every process "
        "on Ctrl-C or SIGTERM. A few services misbehave on purpose (see [demo]).",
        epilog=ENV_HELP
        + """
[demo] keys (env METRICS_MESH_DEMO_<KEY>): upstream_port, load_scale, misbehave,
  restarting_service, up_seconds, down_seconds, not_serving_service,
  not_serving_after_seconds, not_serving_every_seconds, not_serving_for_seconds,
  error_service, error_after_seconds, error_every_seconds, error_for_seconds,
  startup_timeout_seconds, stop_timeout_seconds, run_dir
""",
        formatter_class=formatter,
    )
    _config_arg(demo)
    ports = demo.add_mutually_exclusive_group()
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
    demo.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where logs and the generated config go (default: [demo] run_dir, else a new "
        "temporary directory)",
    )
    demo.add_argument(
        "--load-scale",
        type=_non_negative,
        metavar="X",
        help="multiply every service's event rates by X (overrides [demo] load_scale)",
    )
    demo.add_argument(
        "--no-misbehave",
        action="store_true",
        help="no service misbehaves on purpose (overrides [demo] misbehave)",
    )
    demo.set_defaults(handler=_demo)

    aggregator = commands.add_parser(
        "aggregator",
        help="run the aggregator (same as python -m aggregator)",
        description="Collect every agent's event rate in shared rounds and serve "
        "metricsmesh.v1.AggregatorService (GetSnapshot, StreamSnapshots), health and "
        "reflection until SIGINT/SIGTERM.",
        epilog=ENV_HELP
        + """
[aggregator] keys (env METRICS_MESH_AGGREGATOR_<KEY>): host, port, interval_seconds,
  deadline_seconds, history_seconds, max_subscribers, backoff_max_seconds
""",
        formatter_class=formatter,
    )
    _config_arg(aggregator)
    aggregator.add_argument("--host", help="bind host (overrides [aggregator] host)")
    aggregator.add_argument(
        "--port", type=int, help="port, 0 = any free one (overrides [aggregator] port)"
    )
    aggregator.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    aggregator.set_defaults(handler=_aggregator)

    gateway = commands.add_parser(
        "gateway",
        help="run the gateway: REST, SSE, WebSocket, /metrics, dashboard (same as python -m "
        "gateway)",
        description="Serve the REST endpoint, SSE, WebSocket, Prometheus /metrics and the "
        "dashboard, fed by one subscription to the aggregator, until SIGINT/SIGTERM.",
        epilog=ENV_HELP
        + """
[gateway] keys (env METRICS_MESH_GATEWAY_<KEY>): host, port, aggregator,
  stale_after_seconds, cors_origins (env: comma-separated), heartbeat_seconds, history_size,
  reconnect_initial_seconds, reconnect_max_seconds, access_log
""",
        formatter_class=formatter,
    )
    _config_arg(gateway)
    gateway.add_argument("--host", help="bind host (overrides [gateway] host)")
    gateway.add_argument("--port", type=int, help="bind port (overrides [gateway] port)")
    gateway.add_argument(
        "--aggregator", metavar="HOST:PORT", help="the aggregator (overrides [gateway] aggregator)"
    )
    gateway.add_argument("--access-log", action="store_true", help="log every request")
    gateway.add_argument("--log-level", default="info", help="log level (default info)")
    gateway.set_defaults(handler=_gateway)

    snapshot = commands.add_parser(
        "snapshot",
        help="print one snapshot of the fleet (GetSnapshot) as a table or JSON",
        description="Ask the aggregator for one snapshot (GetSnapshot) and print it as a "
        "table, or with -o json in protobuf's JSON mapping.",
        epilog=ENV_HELP,
        formatter_class=formatter,
    )
    _config_arg(snapshot)
    _target_args(snapshot)
    snapshot.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="output format (default table)",
    )
    snapshot.add_argument(
        "--max-age",
        type=_non_negative,
        metavar="SECONDS",
        help="oldest snapshot accepted; an older one makes the aggregator run a round first",
    )
    snapshot.add_argument(
        "--timeout",
        type=_positive,
        default=5.0,
        metavar="SECONDS",
        help="call deadline (default 5)",
    )
    snapshot.set_defaults(handler=_snapshot)

    top = commands.add_parser(
        "top",
        help="a live table of the fleet, sorted by rate (StreamSnapshots)",
        description="Subscribe to the aggregator (StreamSnapshots) and show the fleet as a "
        "table refreshed in place, busiest service first, statuses in colour. Ctrl-C quits.",
        epilog=ENV_HELP,
        formatter_class=formatter,
    )
    _config_arg(top)
    _target_args(top)
    top.add_argument(
        "--interval",
        type=_non_negative,
        default=0.0,
        metavar="SECONDS",
        help="least time between two refreshes (default: every snapshot)",
    )
    top.add_argument(
        "--count",
        type=_count,
        metavar="N",
        help="quit after N refreshes (default: run until Ctrl-C)",
    )
    top.set_defaults(handler=_top)
    return parser


def _load(args: argparse.Namespace) -> MeshConfig:
    return load_config(args.config)


def _demo(args: argparse.Namespace) -> int:
    from demo_fleet.plan import plan_fleet
    from demo_fleet.run import run_demo
    from demo_fleet.settings import load_demo_settings
    from gateway import GatewayConfigError, load_settings

    try:
        config = _load(args)
        gateway = load_settings(args.config)
        demo = load_demo_settings(config.raw)
        if args.load_scale is not None:
            demo = dataclasses.replace(demo, load_scale=args.load_scale)
        if args.no_misbehave:
            demo = dataclasses.replace(demo, misbehave=False)
        plan = plan_fleet(
            config,
            gateway,
            demo,
            port_offset=args.port_offset,
            use_free_ports=args.free_ports,
        )
    except (ConfigError, GatewayConfigError, ValueError) as error:
        print(f"metrics-mesh demo: {error}", file=sys.stderr)
        return 2
    return run_demo(plan, run_dir=args.run_dir)


def _aggregator(args: argparse.Namespace) -> int:
    from aggregator.__main__ import main as aggregator_main

    argv = ["--log-level", args.log_level]
    argv += _optional("--config", args.config)
    argv += _optional("--host", args.host)
    argv += _optional("--port", args.port)
    return aggregator_main(argv)


def _gateway(args: argparse.Namespace) -> int:
    from gateway.__main__ import main as gateway_main

    argv = ["--log-level", args.log_level]
    argv += _optional("--config", args.config)
    argv += _optional("--host", args.host)
    argv += _optional("--port", args.port)
    argv += _optional("--aggregator", args.aggregator)
    if args.access_log:
        argv.append("--access-log")
    return gateway_main(argv)


def _optional(flag: str, value: object) -> list[str]:
    return [] if value is None else [flag, str(value)]


def _target(args: argparse.Namespace) -> str:
    from metricsmesh_cli.client import aggregator_target

    return aggregator_target(_load(args), args.aggregator)


def _snapshot(args: argparse.Namespace) -> int:
    from metricsmesh_cli.snapshot import run_snapshot

    return run_snapshot(
        _target(args),
        output=args.output,
        console=Console(),
        errors=Console(stderr=True),
        services=args.services,
        types=args.types,
        max_age=args.max_age,
        timeout=args.timeout,
    )


def _top(args: argparse.Namespace) -> int:
    from metricsmesh_cli.top import run_top

    return run_top(
        _target(args),
        Console(),
        Console(stderr=True),
        services=args.services,
        types=args.types,
        interval=args.interval,
        count=args.count,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `metrics-mesh` command line and return its exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        print(f"metrics-mesh {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
