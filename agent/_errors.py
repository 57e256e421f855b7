"""Errors the agent raises, each with a message the operator can act on.

MeshError (mesh_common.errors)
 ├── AgentError          base of the agent library's own errors
 ├── PortInUseError      the gRPC port is taken by another process (shared by every server)
 └── ServerStateError    start/stop called in the wrong order (shared by every server)
"""

from __future__ import annotations

from mesh_common.errors import MeshError


class AgentError(MeshError):
    """Base class of the errors only the agent library raises."""
