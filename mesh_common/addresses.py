"""HOST:PORT, written once: parsing, formatting with IPv6 brackets, wildcard to loopback.

`HostPort.parse("[::1]:50100")` and `str(HostPort("::1", 50100))` are inverses; `dialable()`
turns a bind address such as `0.0.0.0` or `::` into the loopback address a local client dials.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh_common.errors import AddressError

WILDCARD_TO_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}
"""Bind-everywhere hosts and the loopback address a client on this machine dials instead."""


def format_host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets (`[::1]:50100`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def loopback_for(host: str) -> str:
    """The host a local client dials to reach a server bound to `host`."""
    return WILDCARD_TO_LOOPBACK.get(host, host)


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host (name, IPv4 or IPv6 address, without brackets) and a port."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, what: str = "address", allow_port_zero: bool = False) -> HostPort:
        """Parse `host:port` or `[v6]:port`; AddressError naming `what` when it is not one.

        The port is required (a bare `localhost` is refused rather than dialled on 443) and
        must be in 1..65535 (0 too with `allow_port_zero`, for "any free port").
        """
        example = "e.g. 127.0.0.1:50100 or [::1]:50100"
        text = text.strip()
        if text.startswith("["):
            host, close, rest = text[1:].partition("]")
            if not close or not rest.startswith(":"):
                raise AddressError(f"{what}: {text!r} is not [IPV6]:PORT ({example})")
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise AddressError(f"{what}: {text!r} has no port; write HOST:PORT ({example})")
            if ":" in host:
                raise AddressError(f"{what}: {text!r}: put an IPv6 host in brackets ({example})")
        if not host:
            raise AddressError(f"{what}: {text!r} has no host ({example})")
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise AddressError(f"{what}: {text!r}: the port must be a number ({example})")
        port = int(port_text)
        low = 0 if allow_port_zero else 1
        if not low <= port <= 65535:
            raise AddressError(f"{what}: {text!r}: port {port} is not in {low}..65535")
        return cls(host, port)

    def __str__(self) -> str:
        return format_host_port(self.host, self.port)

    def dialable(self) -> HostPort:
        """The address a client on this machine dials (a wildcard host becomes loopback)."""
        return HostPort(loopback_for(self.host), self.port)
