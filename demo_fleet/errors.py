"""Errors of the demo fleet.

MeshError (mesh_common.errors)
 └── DemoError
      └── StartupError   a process did not come up (the message shows the end of its log)
A taken port is mesh_common's PortInUseError, as everywhere else.
"""

from __future__ import annotations

from mesh_common.errors import MeshError


class DemoError(MeshError):
    """Base class of the demo fleet's errors."""


class StartupError(DemoError):
    """A process did not come up; the message names it and shows the end of its log."""
