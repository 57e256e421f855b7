"""Free ports on 127.0.0.1 for the tests: a bound socket to serve on, or a port nobody serves.

`free_socket()` is bound to a port the kernel picked (a server takes it with `sockets=`);
`free_port()` is a port that was just bound and released: nothing listens on it, for a
service that is down or for a server the test starts there later.
"""

from __future__ import annotations

import socket


def free_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port, ready to listen (SO_REUSEADDR set)."""
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on connections of a socket that says so.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A port that was just bound and released: nothing listens on it."""
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
        return port
