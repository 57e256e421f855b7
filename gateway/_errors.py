"""The gateway's errors.

GatewayError
 └── GatewayConfigError   the [gateway] settings or the config file are wrong
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class GatewayConfigError(GatewayError, ValueError):
    """A setting is unknown, mistyped or out of range; the message names it."""
