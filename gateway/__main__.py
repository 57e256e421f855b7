"""`python -m gateway --config FILE --port PORT --aggregator HOST:PORT`: serve with uvicorn.

`add_arguments()` and `run()` are also what `metrics-mesh gateway` is built from.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import ssl
import sys
from collections.abc import Callable
from typing import Any

import uvicorn

from gateway._app import create_app
from gateway._http import guarded_protocol
from gateway._settings import SECTION, GatewaySettings, load_settings
from mesh_common.addresses import format_host_port, loopback_for
from mesh_common.auth_settings import SECTION as AUTH_SECTION
from mesh_common.auth_settings import AuthSettings, check_admin_token
from mesh_common.config import load_mesh_file
from mesh_common.errors import MeshError, exit_status
from mesh_common.exposure import exposure_warning
from mesh_common.options import (
    ENV_HELP,
    HelpFormatter,
    add_config_option,
    add_logging_options,
    add_version_option,
    configure_logging,
    host_port,
    port_number,
)
from mesh_common.tls import PLAINTEXT, TlsSettings
from mesh_common.tls import SECTION as TLS_SECTION
from mesh_common.tls_https import RotatingContext
from mesh_common.transport import listen_http

_LOG = logging.getLogger("gateway")

DESCRIPTION = (
    "Serve the REST endpoint, SSE, WebSocket, Prometheus /metrics and the dashboard, fed by "
    "one subscription to the aggregator, until SIGINT/SIGTERM."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The gateway's options: --config, --host, --port, --aggregator, --access-log, logging."""
    add_config_option(parser)
    parser.add_argument("--host", help="bind host (overrides [gateway] host)")
    parser.add_argument("--port", type=port_number, help="bind port (overrides [gateway] port)")
    parser.add_argument(
        "--aggregator",
        type=host_port,
        metavar="HOST:PORT",
        help="the aggregator (overrides [gateway] aggregator)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    add_logging_options(parser)


def epilog() -> str:
    """The help text's epilog: configuration sources, the [gateway] and [auth] keys."""
    return ENV_HELP + "\n" + SECTION.help_text() + "\n" + AUTH_SECTION.help_text()


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    """File + environment, then the command line on top."""
    settings = load_settings(args.config)
    changes: dict[str, Any] = {}
    if args.host is not None:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    if args.aggregator is not None:
        changes["aggregator"] = str(args.aggregator)
    if args.access_log:
        changes["access_log"] = True
    return dataclasses.replace(settings, **changes) if changes else settings


def run(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM; returns the exit status."""
    try:
        settings = settings_from_args(args)
        auth = load_mesh_file(args.config).read(AUTH_SECTION)
        tls = load_mesh_file(args.config).read(TLS_SECTION)
        check_admin_token("gateway", settings.admin_token, auth)
        sock = listen_http(settings.host, settings.port)
    except MeshError as error:
        print(f"gateway: {error}", file=sys.stderr)
        return exit_status(error)
    configure_logging(args)
    scheme = "https" if tls.can_serve else "http"
    url = f"{scheme}://{format_host_port(loopback_for(settings.host), sock.getsockname()[1])}/"
    _LOG.info("gateway serving on %s (aggregator %s)", url, settings.aggregator)
    warning = exposure_warning("the gateway", settings.host, auth=auth, tls=tls)
    if warning is not None:
        _LOG.warning("%s", warning)
    # log_config None: uvicorn's own lines go through the mesh's handler (text or JSON).
    config = uvicorn_config(
        settings,
        auth=auth,
        tls=tls,
        loop="uvloop",
        log_level=args.log_level.lower(),
        log_config=None,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def uvicorn_config(
    settings: GatewaySettings,
    *,
    auth: AuthSettings | None = None,
    tls: TlsSettings | None = None,
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of the gateway app, with the limits of `settings`.

    The HTTP protocol is httptools with the connection cap, header size limit and header
    timeout of `gateway._http`; WebSocket frames are bounded a little above the message
    limit (the app closes with 1009 at the limit itself, naming it). WebSockets go without
    per-message deflate: its zlib compressor and decompressor per connection were half of
    what a client cost (about 93 KB with it, 45 KB without), and compressing each shared
    message once per client doubled the gateway's CPU (python -m bench ws_memory).
    `auth` is the `[auth]` table (tokens and logins). With a
    certificate in `tls` (the `[tls]` table) it serves HTTPS (requiring a client certificate
    signed by its CA under `client_auth`), following rotated files (`https_options`).
    `options` are uvicorn's, over these.
    """
    config: dict[str, Any] = {
        "http": guarded_protocol(settings),
        "access_log": settings.access_log,
        "ws": "websockets-sansio",
        "ws_max_size": settings.ws_max_message_bytes + 4096,
        "ws_per_message_deflate": False,
        **https_options(tls or PLAINTEXT, client_auth=settings.https_client_auth),
    }
    return uvicorn.Config(create_app(settings, tls=tls, auth=auth), **{**config, **options})


def https_options(tls: TlsSettings, *, client_auth: bool = True) -> dict[str, Any]:
    """Uvicorn's TLS options for `tls` (none when it has no certificate to serve).

    A client certificate is required under `tls.client_auth` unless `client_auth` is False
    (`[gateway] https_client_auth`: browsers that hold no certificate, tokens instead).

    The context follows rotated files: new connections get the new certificate (and CA)
    within a handshake of the change, without a restart (`mesh_common.tls_https`).
    """
    if not tls.can_serve:
        return {}
    options: dict[str, Any] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.ca_file:
        options["ssl_ca_certs"] = tls.ca_file
        required = tls.client_auth and client_auth
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED if required else ssl.CERT_NONE

    def rotating(_: uvicorn.Config, build: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return RotatingContext(tls, build).context

    options["ssl_context_factory"] = rotating
    return options


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m gateway`."""
    result = argparse.ArgumentParser(
        prog="python -m gateway",
        description=DESCRIPTION,
        epilog=epilog(),
        formatter_class=HelpFormatter,
    )
    add_arguments(result)
    add_version_option(result)
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway`: parse the command line and run."""
    return run(parser().parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
