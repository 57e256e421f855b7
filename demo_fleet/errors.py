"""Errors of the demo fleet.

MeshError (mesh_common.errors)
 ├── DemoError
 │    ├── StartupError      a process did not come up (the message shows the end of its log)
 │    ├── SupervisorError   the supervisor was started where it cannot work (not the main thread)
 │    └── PortTakenError    a port the demo needs is taken (also a PortInUseError)
 └── PortInUseError (mesh_common.errors)
      └── PortTakenError
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesh_common.errors import MeshError, PortInUseError

if TYPE_CHECKING:
    from demo_fleet.ports import PortClaim


class DemoError(MeshError):
    """Base class of the demo fleet's errors."""


class StartupError(DemoError):
    """A process did not come up; the message names it and shows the end of its log."""


class SupervisorError(DemoError):
    """The supervisor cannot work where it was started; the message says why."""


class PortTakenError(PortInUseError, DemoError):
    """A port the demo needs cannot be bound; the message names the port and its owner."""

    def __init__(self, claim: PortClaim, reason: str) -> None:
        DemoError.__init__(
            self,
            f"port {claim.port} on {claim.host} is not available ({reason}), but "
            f"{claim.owner} needs it; stop whatever listens there, or start the demo with "
            "--free-ports (any free ports) or --port-offset N (every port + N)",
        )
        self.host = claim.host
        self.port = claim.port
        self.claim = claim
