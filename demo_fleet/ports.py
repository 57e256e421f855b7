"""Port checks for the demo: is a port free, and a batch of free ones when asked for."""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from demo_fleet.errors import PortTakenError


@dataclass(frozen=True, slots=True)
class PortClaim:
    """A port the demo is about to listen on, and who will use it."""

    host: str
    port: int
    owner: str
    """Who listens there, e.g. `weather-api (HTTP)`."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_is_free(host: str, port: int) -> tuple[bool, str]:
    """Whether a server could listen on host:port now (as uvicorn and gRPC bind it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            return False, error.strerror or str(error)
    return True, ""


def check_ports(claims: Iterable[PortClaim]) -> None:
    """Raise PortTakenError for the first claim whose port is taken (or claimed twice)."""
    seen: dict[tuple[str, int], PortClaim] = {}
    for claim in claims:
        key = (claim.host, claim.port)
        if key in seen:
            raise PortTakenError(claim, f"{seen[key].owner} is configured on it too")
        seen[key] = claim
        free, reason = port_is_free(claim.host, claim.port)
        if not free:
            raise PortTakenError(claim, reason)


LOWEST_PICKED_PORT = 10000
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for port-0 binds and outgoing connections (Linux; IANA elsewhere)."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 49152, 65535
    return low, high


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free a moment ago (all held open while picking).

    They are picked below the kernel's ephemeral range when there is room there: the
    processes that will listen on them start seconds later, and meanwhile any outgoing
    connection on the machine could take a port from the ephemeral range.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(LOWEST_PICKED_PORT, low))
    random.shuffle(candidates)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for port in candidates:
            if len(ports) == count:
                break
            sock = stack.enter_context(socket.socket(_family(host), socket.SOCK_STREAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            ports.append(port)
        while len(ports) < count:  # no room below the ephemeral range: let the kernel pick
            sock = stack.enter_context(socket.socket(_family(host), socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports
