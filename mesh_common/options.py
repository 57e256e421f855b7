"""Command-line options every program of the mesh shares, and argparse value types.

Each component declares its own options next to its code (`add_arguments(parser)` in its
`__main__`); `python -m COMPONENT` and `metrics-mesh COMPONENT` both build from it.
"""

from __future__ import annotations

import argparse
import math
import os

from mesh_common import logs
from mesh_common.addresses import HostPort, is_port, port_range
from mesh_common.errors import AddressError
from mesh_common.logs import LOG_FORMATS, LOG_LEVELS
from mesh_common.version import version_line

CONFIG_ENV = "METRICS_MESH_CONFIG"
"""Environment variable naming the mesh file when --config is not given."""

ENV_HELP = f"""\
configuration:
  One TOML file configures every part (see examples/metrics-mesh.toml); --config FILE
  names it, or ${CONFIG_ENV}. Without one, the built-in defaults apply (the 15-service
  registry, aggregator on 127.0.0.1:50100, gateway on 127.0.0.1:8000).
  Environment variables override keys of the file: METRICS_MESH_<TABLE>_<KEY>, e.g.
    METRICS_MESH_AGGREGATOR_PORT=50200   METRICS_MESH_AGGREGATOR_INTERVAL_SECONDS=2
    METRICS_MESH_GATEWAY_PORT=8080       METRICS_MESH_GATEWAY_AGGREGATOR=127.0.0.1:50200
    METRICS_MESH_DEMO_LOAD_SCALE=0.5     METRICS_MESH_DEMO_MISBEHAVE=false
  Command-line options override both.
"""
"""The epilog every command shows: where configuration comes from."""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as argparse does, but keeps multi-line text (the epilogs) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """`--config FILE`, defaulting to $METRICS_MESH_CONFIG."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get(CONFIG_ENV) or None,
        help=f"the mesh TOML file (env ${CONFIG_ENV}; default: built-in defaults)",
    )


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """`--version`: print `metrics-mesh X.Y.Z` (the installed package's version) and exit 0."""
    parser.add_argument(
        "--version",
        action="version",
        version=version_line(),
        help="print the installed metrics-mesh version and exit",
    )


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """`--log-level LEVEL` (default INFO) and `--log-format text|json` (default text)."""
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="logging level (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="log lines on stderr as text, or as one JSON object per line (default text)",
    )


def configure_logging(args: argparse.Namespace) -> None:
    """Log to stderr as `add_logging_options` asked (`mesh_common.logs.configure`)."""
    logs.configure(args.log_level, args.log_format)


def non_negative_seconds(text: str) -> float:
    """A number of seconds that is 0 or more (argparse `type=`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def positive_seconds(text: str) -> float:
    """A number of seconds that is more than 0 (argparse `type=`)."""
    value = non_negative_seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def count(text: str) -> int:
    """A count of 1 or more (argparse `type=`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def port_number(text: str) -> int:
    """A port to listen on, 0..65535 (0 = any free one) (argparse `type=`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not is_port(value, allow_zero=True):
        raise argparse.ArgumentTypeError(f"{text!r} is not in {port_range(allow_zero=True)}")
    return value


def host_port(text: str) -> HostPort:
    """A HOST:PORT to dial (argparse `type=`)."""
    try:
        return HostPort.parse(text, what="HOST:PORT")
    except AddressError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
