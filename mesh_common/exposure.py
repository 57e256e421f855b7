"""The start-up warning of a server bound past loopback with something left open.

    warning = exposure_warning("the gateway", settings.host, auth=auth, tls=tls)
    if warning: log.warning(warning)

On a loopback host nothing is said (the demo). Past it, the warning names what is open:
without `[auth]` every endpoint answers whoever reaches the port; without `[tls]` tokens
and figures cross the network in clear. An agent has no tokens (the aggregator is its only
caller): mutual TLS is what keeps strangers out, so for it `auth` is None and the warning
names `[tls] client_auth`.
"""

from __future__ import annotations

from mesh_common.auth_settings import AuthSettings
from mesh_common.tls import TlsSettings

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
"""Bind hosts only this machine can reach."""


def exposure_warning(
    program: str, host: str, *, auth: AuthSettings | None, tls: TlsSettings | None
) -> str | None:
    """What `program` bound to `host` leaves open, as one log line; None when nothing is."""
    if host in LOOPBACK_HOSTS:
        return None
    serving_tls = tls is not None and tls.can_serve
    open_parts: list[str] = []
    if auth is not None and not auth.enabled:
        open_parts.append("without [auth]: every endpoint answers whoever reaches the port")
    if auth is None and not (serving_tls and tls is not None and tls.client_auth):
        open_parts.append("without [tls] client_auth: its figures answer whoever reaches the port")
    if not serving_tls:
        open_parts.append("without [tls]: tokens and figures cross the network in clear")
    if not open_parts:
        return None
    return (
        f"{program} listens on {host or '*'} "
        + "; and ".join(open_parts)
        + " (README: Running across hosts)"
    )
