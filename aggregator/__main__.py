"""`python -m aggregator --config FILE --port PORT`: serve until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys

from agent import AgentError
from aggregator._errors import AggregatorError
from aggregator._server import AggregatorServer
from aggregator.config import load_config

_LOG = logging.getLogger("aggregator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator",
        description="Collect every agent's event rate in shared rounds and serve snapshots.",
    )
    parser.add_argument("--config", help="mesh TOML file (default: the built-in 15 services)")
    parser.add_argument("--host", help="bind host (overrides [aggregator] host)")
    parser.add_argument("--port", type=int, help="port, 0 = any free one (overrides the file)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


async def serve(server: AggregatorServer) -> None:
    """Run `server` until SIGINT/SIGTERM, then stop it gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    _LOG.info(
        "aggregator serving on %s (%d services, interval %.3g s, deadline %.3g s)",
        server.address,
        len(server.registry),
        server.settings.interval_seconds,
        server.settings.deadline_seconds,
    )
    try:
        await stop.wait()
    finally:
        _LOG.info("aggregator stopping")
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the configuration and serve; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
        settings = config.aggregator
        overrides = {"host": args.host, "port": args.port}
        settings = dataclasses.replace(
            settings, **{key: value for key, value in overrides.items() if value is not None}
        )
        asyncio.run(serve(AggregatorServer(config.services, settings)))
    except (AggregatorError, AgentError) as error:
        print(f"aggregator: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
