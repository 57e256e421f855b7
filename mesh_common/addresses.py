"""Ports and HOST:PORT, written once: the port range, splitting, parsing, IPv6 brackets.

`is_port` / `port_range` are the one TCP port rule (1..65535, 0 too where it means "any free
port"). `split_host_port` is the one splitter of `host[:port]` and `[v6][:port]` texts (a
Host header, a gRPC peer, a configured address); `HostPort.parse("[::1]:50100")` and
`str(HostPort("::1", 50100))` are inverses; `dialable()` turns a bind address such as
`0.0.0.0` or `::` into the loopback address a local client dials.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh_common.errors import AddressError

WILDCARD_TO_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}
"""Bind-everywhere hosts and the loopback address a client on this machine dials instead."""


MAX_PORT = 65535
"""The highest TCP port."""


def is_port(value: int, *, allow_zero: bool = False) -> bool:
    """Whether `value` is a TCP port: 1..65535, or 0 too (any free port) with `allow_zero`."""
    return (0 if allow_zero else 1) <= value <= MAX_PORT


def port_range(*, allow_zero: bool = False) -> str:
    """The range `is_port` accepts, as error texts write it: `1..65535` or `0..65535`."""
    return f"{0 if allow_zero else 1}..{MAX_PORT}"


def split_host_port(text: str) -> tuple[str, str | None]:
    """(host, port text or None) of `host`, `host:port`, `[v6]` or `[v6]:port`.

    The host comes without brackets; a bare IPv6 address (two or more colons, no brackets)
    is all host. Nothing is validated: the caller decides what it requires.
    """
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close:
            return text, None
        return host, rest[1:] if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


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
        host, port_text = split_host_port(text)
        if port_text is None:
            if text.startswith("["):
                raise AddressError(f"{what}: {text!r} is not [IPV6]:PORT ({example})")
            if ":" in text:
                raise AddressError(f"{what}: {text!r}: put an IPv6 host in brackets ({example})")
            raise AddressError(f"{what}: {text!r} has no port; write HOST:PORT ({example})")
        if not host:
            raise AddressError(f"{what}: {text!r} has no host ({example})")
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise AddressError(f"{what}: {text!r}: the port must be a number ({example})")
        port = int(port_text)
        if not is_port(port, allow_zero=allow_port_zero):
            raise AddressError(
                f"{what}: {text!r}: port {port} is not in {port_range(allow_zero=allow_port_zero)}"
            )
        return cls(host, port)

    def __str__(self) -> str:
        return format_host_port(self.host, self.port)

    def dialable(self) -> HostPort:
        """The address a client on this machine dials (a wildcard host becomes loopback)."""
        return HostPort(loopback_for(self.host), self.port)
