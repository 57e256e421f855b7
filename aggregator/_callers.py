"""Who calls StreamSnapshots, as its subscriber slot sees it: an identity, or else a peer host.

The aggregator keeps `reserved_subscribers` of its `max_subscribers` slots for the mesh's
gateway and caps every other caller at `max_streams_per_peer` streams. Who is trusted (may
take the reserved slots, no cap) and what counts as one caller depend on whether callers
have identities, which is decided once, when the server is built:

- With identities (`[auth]` on, or mutual TLS): a caller whose token holds the `gateway`
  scope, or whose client certificate is named in `trusted_clients`, is trusted. Any other
  caller is counted by its token's identity (an API token's name, a JWT's `sub`), else by its
  certificate's name. `trusted_peers` is not consulted: once identities exist, an address
  alone never earns a reserved slot (a process on the gateway's host is not the gateway).
- On an open mesh (no `[auth]`, no mutual TLS: the loopback demo), nobody has an identity: a
  caller from a `trusted_peers` host is trusted, any other is counted by its host.

A certificate's names are its subject CN and its DNS and URI subject alternative names, as
gRPC's `auth_context()` reports them; a certificate reaches a handler only after the
handshake verified it against `[tls] ca_file`. The token's identity comes from the `[auth]`
interceptor (`aggregator._auth.caller_identity`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from aggregator._auth import caller_identity
from aggregator._settings import AggregatorSettings
from mesh_common.auth_settings import GATEWAY_SCOPE
from mesh_common.errors import ConfigError
from mesh_common.grpc_input import peer_host
from mesh_common.tls import TlsSettings

CERTIFICATE_NAMES = ("x509_common_name", "peer_dns", "peer_uri")
"""The `auth_context()` properties naming a verified client certificate: CN, DNS and URI SANs."""


@dataclass(frozen=True, slots=True)
class Caller:
    """One StreamSnapshots caller, as the subscriber slots count it."""

    name: str
    """What the per-caller cap counts and a refusal names: `token 'NAME'`, `client
    certificate 'NAME'` or `peer host HOST`."""
    trusted: bool
    """May take the reserved slots, with no per-caller cap."""


IN_PROCESS = Caller("in-process", trusted=True)
"""A subscriber inside the aggregator's own process (tests, tools): trusted."""


def certificate_names(auth_context: Mapping[str, Iterable[bytes]]) -> tuple[str, ...]:
    """The names of the peer's verified client certificate, CN first; () without one."""
    names: list[str] = []
    for key in CERTIFICATE_NAMES:
        names.extend(value.decode("utf-8", "replace") for value in auth_context.get(key, ()))
    return tuple(dict.fromkeys(names))


class CallerRules:
    """Tells trusted StreamSnapshots callers from the others (module docstring)."""

    def __init__(self, settings: AggregatorSettings, *, identities: bool) -> None:
        self.identities = identities
        """Whether callers have identities (`[auth]` on or mutual TLS): addresses do not count."""
        self._trusted_peers = frozenset(settings.trusted_peers)
        self._trusted_clients = frozenset(settings.trusted_clients)

    def caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """Who is calling on `context` (call it from the handler: the identity is the call's)."""
        if not self.identities:
            host = peer_host(context.peer())
            return Caller(f"peer host {host}", host in self._trusted_peers)
        identity = caller_identity()
        names = certificate_names(context.auth_context())
        trusted = (
            identity is not None and GATEWAY_SCOPE in identity.scopes
        ) or not self._trusted_clients.isdisjoint(names)
        if identity is not None:
            return Caller(f"token {identity.name!r}", trusted)
        if names:
            return Caller(f"client certificate {names[0]!r}", trusted)
        return Caller(f"peer host {peer_host(context.peer())}", trusted=False)


def caller_rules(
    settings: AggregatorSettings, *, auth_enabled: bool, tls: TlsSettings | None
) -> CallerRules:
    """The rules of a server with `[auth]` on or off and `tls`; ConfigError when they clash.

    `trusted_clients` needs mutual TLS (`[tls] client_auth`): without it no client presents
    a certificate, and the names would silently trust nobody.
    """
    mutual = tls is not None and tls.client_auth
    if settings.trusted_clients and not mutual:
        raise ConfigError(
            "[aggregator] trusted_clients: names client certificates, which only mutual TLS "
            "asks for; set [tls] client_auth = true (with ca_file, cert_file, key_file) or "
            "give the gateway a token with the 'gateway' scope instead"
        )
    return CallerRules(settings, identities=auth_enabled or mutual)
