"""`python -m gateway --config FILE --port PORT --aggregator HOST:PORT`: serve with uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any

import uvicorn

from gateway._app import create_app
from gateway._errors import GatewayConfigError
from gateway._settings import GatewaySettings, load_settings, parse_target


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway", description="Serve the metrics-mesh gateway and dashboard."
    )
    parser.add_argument("--config", help="the shared TOML file ([gateway] section)")
    parser.add_argument("--host", help="bind host (overrides gateway.host)")
    parser.add_argument("--port", type=int, help="bind port (overrides gateway.port)")
    parser.add_argument("--aggregator", help="HOST:PORT of the aggregator (overrides the file)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--log-level", default="info", help="uvicorn/gateway log level")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    """File + environment, then the command line on top."""
    settings = load_settings(args.config)
    changes: dict[str, Any] = {}
    if args.host is not None:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    if args.aggregator is not None:
        parse_target(args.aggregator)
        changes["aggregator"] = args.aggregator
    if args.access_log:
        changes["access_log"] = True
    return dataclasses.replace(settings, **changes) if changes else settings


def main(argv: list[str] | None = None) -> int:
    """Run the gateway until SIGINT/SIGTERM."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from_args(args)
    except GatewayConfigError as error:
        print(f"gateway: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=settings.access_log,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
