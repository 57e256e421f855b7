"""`python -m aggregator --config FILE --port PORT`: serve until SIGINT or SIGTERM.

`add_arguments()` and `run()` are also what `metrics-mesh aggregator` is built from.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import signal
import sys

from aggregator._alerts.settings import SECTION as ALERTS_SECTION
from aggregator._fleet.settings import SECTION as DISCOVERY_SECTION
from aggregator._history.settings import SECTION as HISTORY_SECTION
from aggregator._ingest.settings import SECTION as INGEST_SECTION
from aggregator._server import AggregatorServer
from aggregator._settings import SECTION, load_config
from mesh_common.addresses import format_host_port
from mesh_common.auth_settings import SECTION as AUTH_SECTION
from mesh_common.auth_settings import AuthSettings
from mesh_common.errors import MeshError, exit_status
from mesh_common.exposure import exposure_warning
from mesh_common.options import (
    ENV_HELP,
    HelpFormatter,
    add_config_option,
    add_logging_options,
    add_version_option,
    configure_logging,
    port_number,
)
from mesh_common.tls import TlsSettings

_LOG = logging.getLogger("aggregator")

DESCRIPTION = (
    "Collect every agent's event rate in shared rounds and serve "
    "metricsmesh.v1.AggregatorService (GetSnapshot, StreamSnapshots), health and reflection "
    "until SIGINT/SIGTERM. The --config file's [[services]] are watched and reloaded (also on "
    "SIGHUP)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The aggregator's options: --config, --host, --port, --otlp-port, --log-*."""
    add_config_option(parser)
    parser.add_argument("--host", help="bind host (overrides [aggregator] host)")
    parser.add_argument(
        "--port", type=port_number, help="port, 0 = any free one (overrides [aggregator] port)"
    )
    parser.add_argument(
        "--otlp-port",
        type=int,
        help="OTLP/gRPC port, 0 = any free one, -1 = none (overrides [ingest] otlp_port)",
    )
    add_logging_options(parser)


def epilog() -> str:
    """The help text's epilog: configuration sources, then the keys of the aggregator's tables."""
    sections = (
        SECTION,
        ALERTS_SECTION,
        HISTORY_SECTION,
        INGEST_SECTION,
        AUTH_SECTION,
        DISCOVERY_SECTION,
    )
    return ENV_HELP + "".join("\n" + section.help_text() for section in sections)


GC_THRESHOLDS = (50_000, 10, 10)
"""The aggregator process's garbage collector thresholds (Python's default: 700, 10, 10)."""


def tune_gc() -> None:
    """Fewer, cheaper cyclic garbage collections for the long-running aggregator process.

    Each message to a StreamSnapshots subscriber allocates a few container objects in grpc's
    write path; at Python's default threshold a collection ran every ~100 messages and
    walked the objects of every open stream (bench `python -m bench.bench_aggregator
    subscribers`, 1000 subscribers: about 13 ms of collections per round, one full
    collection of 60-90 ms in the middle of a burst every few rounds; with these
    thresholds none in steady state: aggregator CPU per message 64-72 -> 53-65 us, delivery
    lag p99 175-193 -> 90-106 ms on a shared 2-core machine). What exists
    once the server has started (modules, descriptors, the registry) is frozen out of
    every collection. Cyclic garbage waits for up to GC_THRESHOLDS[0] allocations.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(
    server: AggregatorServer, auth: AuthSettings | None = None, tls: TlsSettings | None = None
) -> None:
    """Run `server` until SIGINT/SIGTERM, then stop it gracefully; warn if it is exposed.

    SIGHUP reloads the registry at once (`server.fleet.reload()`), as ReloadRegistry does.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    reloads: set[asyncio.Task[object]] = set()

    def reload() -> None:
        _LOG.info("SIGHUP: reloading the registry")
        task = loop.create_task(server.fleet.reload(), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    await server.start()
    tune_gc()
    _LOG.info(
        "aggregator serving on %s (%d services, interval %.3g s, deadline %.3g s)",
        server.address,
        len(server.registry),
        server.settings.interval_seconds,
        server.settings.deadline_seconds,
    )
    warning = exposure_warning(
        "the aggregator", server.settings.host, auth=auth or AuthSettings(), tls=tls
    )
    if warning is not None:
        _LOG.warning("%s", warning)
    if server.otlp_port is not None:
        _LOG.info(
            "OTLP/gRPC MetricsService/Export on %s",
            format_host_port(server.settings.host, server.otlp_port),
        )
    try:
        await stop.wait()
    finally:
        _LOG.info("aggregator stopping")
        await server.stop()


def run(args: argparse.Namespace) -> int:
    """Load the configuration, apply the options and serve; returns the exit status."""
    configure_logging(args)
    try:
        config = load_config(args.config)
        overrides = {"host": args.host, "port": args.port}
        settings = dataclasses.replace(
            config.aggregator,
            **{key: value for key, value in overrides.items() if value is not None},
        )
        ingest = config.ingest
        if args.otlp_port is not None:
            ingest = dataclasses.replace(ingest, otlp_port=args.otlp_port)  # checked: ConfigError
        server = AggregatorServer(
            config.services,
            settings,
            alerts=config.alerts,
            history=config.history,
            ingest=ingest,
            auth=config.auth,
            tls=config.tls,
            config_path=args.config,
            discovery=config.discovery,
        )
        asyncio.run(serve(server, config.auth, config.tls))
    except MeshError as error:
        print(f"aggregator: {error}", file=sys.stderr)
        return exit_status(error)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m aggregator`: parse the command line and run."""
    parser = argparse.ArgumentParser(
        prog="python -m aggregator",
        description=DESCRIPTION,
        epilog=epilog(),
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    add_version_option(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
