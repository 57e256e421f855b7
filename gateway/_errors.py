"""The gateway's errors.

MeshError (mesh_common.errors)
 └── GatewayError
      └── ProtocolError   a WebSocket client message the protocol cannot accept
Configuration errors are mesh_common's ConfigError, shared by every component.
"""

from __future__ import annotations

from mesh_common.errors import MeshError


class GatewayError(MeshError):
    """Base class of every error the gateway raises on purpose."""


class ProtocolError(GatewayError):
    """A client message the WebSocket protocol cannot accept; the text goes back to the client."""
