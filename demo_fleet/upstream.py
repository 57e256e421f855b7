"""A fake upstream data provider for the demo's data services (weather, sports, carbon...).

`GET /v1/<source>` answers a small JSON reading after a short random delay, and now and then
a 503, like a real third-party API; `GET /healthz` answers `ok`. It runs as its own process:
`python -m demo_fleet.upstream --port 8099`.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from demo_fleet.exit_codes import STARTUP_FAILURE_STATUS
from mesh_common.addresses import format_host_port
from mesh_common.errors import PortInUseError
from mesh_common.transport import listen_http

FAILURE_RATIO = 0.02
"""Share of upstream calls answered with 503, so fetch errors show up in the breakdown."""


class UpstreamHandler(BaseHTTPRequestHandler):
    """Serves `/healthz` and `/v1/<source>`; everything else is 404."""

    server_version = "fake-upstream/1"

    def do_GET(self) -> None:
        """Answer one GET request."""
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
            return
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "v1" or not parts[1]:
            self._send(404, {"error": f"no such resource: {self.path}"})
            return
        time.sleep(random.uniform(0.005, 0.04))
        if random.random() < FAILURE_RATIO:
            self._send(503, {"error": "upstream busy, try again"})
            return
        self._send(
            200,
            {"source": parts[1], "value": round(random.uniform(0, 100), 2), "time": time.time()},
        )

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the demo would drown in access logs."""

    def _send(self, status: int, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class UpstreamServer(ThreadingHTTPServer):
    """The threaded HTTP server on a socket already bound by `listen_http`."""

    daemon_threads = True

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.getsockname()[:2], UpstreamHandler, bind_and_activate=False)
        self.socket.close()
        sock.setblocking(True)
        self.socket = sock


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m demo_fleet.upstream",
        description="A fake upstream data API for the demo fleet's data services.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server = UpstreamServer(listen_http(args.host, args.port))
    except PortInUseError as error:
        print(f"fake upstream: {error}", file=sys.stderr)
        return STARTUP_FAILURE_STATUS
    print(f"fake upstream listening on http://{format_host_port(args.host, args.port)}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
