"""The gateway's errors.

MeshError (mesh_common.errors)
 └── GatewayError
      ├── FilterError     a client's view names an unknown service or field
      └── ProtocolError   a WebSocket client message the protocol cannot accept
Configuration errors are mesh_common's ConfigError, shared by every component.
"""

from __future__ import annotations

from mesh_common.errors import MeshError


class GatewayError(MeshError):
    """Base class of every error the gateway raises on purpose."""


class ProtocolError(GatewayError):
    """A client message the WebSocket protocol cannot accept; the text goes back to the client."""


class FilterError(GatewayError, ValueError):
    """A client's filter names an unknown service or field; the message lists the known ones."""
