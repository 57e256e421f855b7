"""The error tree of metrics-mesh, and the exit status each kind of error ends a program with.

MeshError                    every error metrics-mesh raises on purpose
 ├── ConfigError             a config file, environment variable or option is invalid (exit 2)
 │    └── AddressError       a value is not a usable HOST:PORT
 ├── PortInUseError          a port to listen on is taken or cannot be bound (exit 3)
 ├── ServerStateError        a server's start/stop was called in the wrong order
 ├── FilterError             a client's filter names an unknown service, type or field
 ├── ParamError              a request's time, duration or field cannot be read (names it)
 ├── AuthError               a call that may not go on (never quotes a secret)
 │    ├── TokenError         no token, or one that is not valid (bad signature, expired): 401
 │    └── ScopeError         a valid token without the scope the call needs: 403
 ├── agent.AgentError        the agent library's own errors
 ├── aggregator.AggregatorError
 ├── gateway.GatewayError
 └── demo_fleet.DemoError

Each package's errors derive from `MeshError` (and, where they mean the same thing, from the
shared classes above), so `except MeshError` catches every deliberate failure and
`exit_status()` maps any of them to the status a program exits with. Messages name the entry
and the problem so an operator can act on them; wrapping keeps the cause (`raise ... from`).
"""

from __future__ import annotations

EXIT_OK = 0
"""The program did what it was asked."""
EXIT_FAILURE = 1
"""A runtime failure: a call failed, a stream ended, a process did not come up."""
EXIT_USAGE = 2
"""Bad command line, configuration or environment (argparse exits 2 as well)."""
EXIT_PORT_IN_USE = 3
"""A port the program must listen on is taken: a restart would fail the same way."""


class MeshError(Exception):
    """Base class of every error metrics-mesh raises on purpose."""


class ConfigError(MeshError, ValueError):
    """A configuration value is invalid; the message names the entry and the problem.

    `location` says where in the file, when the raiser knows: the table, then array
    indexes and keys, e.g. `("services", 1, "port")` (empty when unknown). A reload names
    the line from it (`aggregator._fleet`) without reading the message.
    """

    def __init__(self, message: str, *, location: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.location = location


class AddressError(ConfigError):
    """A value is not a usable HOST:PORT; the message shows what was given and an example."""


class PortInUseError(MeshError):
    """A port to listen on is already in use (or the address cannot be bound here)."""

    def __init__(self, host: str, port: int, detail: str = "") -> None:
        from mesh_common.addresses import format_host_port

        super().__init__(
            f"cannot listen on {format_host_port(host, port)}: the port is already in use (or "
            "the address is not local); stop the other process or choose another port (0 "
            "picks a free one)" + (f" ({detail})" if detail else "")
        )
        self.host = host
        self.port = port


class FilterError(MeshError, ValueError):
    """A client's filter names an unknown service, type or field; the message lists the known ones.

    Every surface raises this one class: gRPC answers it INVALID_ARGUMENT, REST 422.
    """


class ServerStateError(MeshError):
    """A server's lifecycle method was called in a state where it cannot run (start twice)."""


def exit_status(error: BaseException) -> int:
    """The exit status a program ends with because of `error`."""
    if isinstance(error, PortInUseError):
        return EXIT_PORT_IN_USE
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILURE


class ParamError(MeshError, ValueError):
    """A request's parameter (a time, a duration, a body field) that cannot be read.

    `param` names it as the request spells it (`start`, `step`, `metric_name`, ...).
    """

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f'invalid parameter "{param}": {reason}')
        self.param = param
        self.reason = reason


class AuthError(MeshError):
    """A call that may not go on; the message says why without quoting any secret."""


class TokenError(AuthError):
    """No token, or one that is not valid (bad signature, expired, unknown): 401."""


class ScopeError(AuthError):
    """A valid token that lacks the scope the call needs: 403."""

    def __init__(self, name: str, scope: str) -> None:
        super().__init__(f"{name!r} lacks the {scope!r} scope this call needs")
        self.scope = scope
