"""An HTTPS server's `ssl.SSLContext` from the `[tls]` table, following rotated files.

An HTTP server (uvicorn) builds one context at start and wraps every connection it accepts
with it. `RotatingContext` gives it a context whose SNI callback, which OpenSSL calls early in
every handshake (with or without a name from the client), asks a `Rotation` whether the files
changed (three `stat` calls) and, when they did, builds a new context from them with the same
factory; every later connection is switched to the newest one. So a rotated certificate, key
or CA (the client certificates trusted under `client_auth`) is used by new connections without
a restart, open connections keep theirs, and a retired CA is no longer trusted. A set that
does not fit together is logged once and the last good context kept.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from mesh_common.tls import TlsSettings
from mesh_common.tls_credentials import Rotation

_LOG = logging.getLogger(__name__)


class RotatingContext:
    """The context to serve HTTPS with, switching new connections to rotated files.

    `build` makes a context from the files as they are now (the server's own factory, so a
    new context has the same protocols, ciphers and verification as the first).
    """

    def __init__(self, tls: TlsSettings, build: Callable[[], ssl.SSLContext]) -> None:
        self._build = build
        self._rotation = Rotation(tls, keeping="keeping the old HTTPS certificate")
        self.context = build()
        """The context the server wraps connections with (its SNI callback does the rest)."""
        self.current = self.context
        """The context new connections are switched to: the newest good one."""
        self.context.sni_callback = self._choose

    def _choose(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        try:
            if self._rotation.check():
                self.current = self._renewed()
            if self.current is not self.context:
                connection.context = self.current
        except Exception:  # an exception here would fail the handshake with a bare alert
            _LOG.exception("[tls] choosing the HTTPS certificate failed; serving the old one")

    def _renewed(self) -> ssl.SSLContext:
        try:
            context = self._build()
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            _LOG.warning("[tls] the HTTPS files changed but %s; keeping the old ones", error)
            return self.current
        _LOG.info("[tls] HTTPS certificate files changed: new connections use the new ones")
        return context
