"""Errors the agent raises, each with a message the operator can act on.

AgentError
 ├── PortInUseError     the gRPC port is taken by another process
 └── ServerStateError   start/stop called in the wrong order
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error raised by the agent library."""


class PortInUseError(AgentError):
    """The address the server should listen on is already in use (or cannot be bound)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"cannot listen on {host}:{port}: the port is already in use (or the address is "
            "not local); stop the other process or choose another port (0 picks a free one)"
        )
        self.host = host
        self.port = port


class ServerStateError(AgentError):
    """A lifecycle method was called in a state where it cannot run (e.g. start twice)."""
