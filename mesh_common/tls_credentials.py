"""gRPC credentials from the `[tls]` table: what `transport` binds and dials with.

A server's credentials re-read the files when they change: before each new connection's
handshake gRPC asks `RotatingFiles` for the certificate to use, which compares the files'
modification times and sizes (three `stat` calls) with those it last loaded and loads them
again when they differ, so rotated certificates are used by new connections without a restart.
A half-written or broken set is logged once and the previous one kept. A channel's credentials
are read when the channel is opened: a long-lived client compares `files_stamp` now and then
and opens new channels when it changed (the aggregator does, before each round).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

import grpc

from mesh_common.errors import ConfigError
from mesh_common.tls import TlsSettings, check_certificates, check_key, read_pem

_LOG = logging.getLogger(__name__)


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials:
    """Credentials verifying the server with `ca_file` (empty: the system's roots).

    Under `client_auth` they present `cert_file`/`key_file` too.
    """
    root = read_pem("ca_file", tls.ca_file) if tls.ca_file else None
    if tls.cert_file and tls.client_auth:
        return grpc.ssl_channel_credentials(
            root, read_pem("key_file", tls.key_file), read_pem("cert_file", tls.cert_file)
        )
    return grpc.ssl_channel_credentials(root)


def channel_options(tls: TlsSettings) -> Sequence[tuple[str, Any]]:
    """Channel options for TLS: the name to verify when `server_name` is set."""
    if tls.server_name:
        return (("grpc.ssl_target_name_override", tls.server_name),)
    return ()


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """Credentials presenting `cert_file`, re-reading the files when they change.

    Under `client_auth` a client certificate signed by `ca_file` is required. Raises
    ConfigError when no certificate is configured (a client-only `[tls]` table).
    """
    if not tls.can_serve:
        raise ConfigError(
            "[tls] cert_file and key_file are needed to serve TLS (only ca_file is set)"
        )
    files = RotatingFiles(tls)
    # gRPC reads None as "unchanged" (its stubs do not say so): the connection keeps the
    # loaded configuration instead of building a TLS context per handshake.
    fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], files.fetch)
    return grpc.dynamic_ssl_server_credentials(
        files.initial, fetch, require_client_authentication=tls.client_auth
    )


Stamp = tuple[tuple[int, int], ...]
"""The modification times and sizes of a set of files."""


def files_stamp(tls: TlsSettings) -> Stamp:
    """The modification time and size of each file `tls` names (raises OSError)."""
    paths = (path for path in (tls.cert_file, tls.key_file, tls.ca_file) if path)
    return tuple((each.st_mtime_ns, each.st_size) for each in map(os.stat, paths))


class RotatingFiles:
    """The server's certificate configuration, loaded again whenever its files change."""

    def __init__(self, tls: TlsSettings) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._stamp = files_stamp(tls)
        self.initial = self._load()
        """The configuration the server starts with."""
        self.reloads = 0
        """How many times changed files were loaded."""

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """The new configuration when the files changed since the last load, else None."""
        with self._lock:
            try:
                stamp = files_stamp(self._tls)
            except OSError as error:
                _LOG.warning("[tls] cannot stat the certificate files: %s; keeping the old", error)
                return None
            if stamp == self._stamp:
                return None
            self._stamp = stamp
            try:
                configuration = self._load()
            except ConfigError as error:
                _LOG.warning("[tls] the certificate files changed but %s; keeping the old", error)
                return None
            self.reloads += 1
            _LOG.info("[tls] certificate files changed: new connections use the new ones")
            return configuration

    def _load(self) -> grpc.ServerCertificateConfiguration:
        tls = self._tls
        chain = read_pem("cert_file", tls.cert_file)
        key = read_pem("key_file", tls.key_file)
        check_certificates("cert_file", chain)
        check_key("key_file", key, chain)
        root = read_pem("ca_file", tls.ca_file) if tls.ca_file else None
        return grpc.ssl_server_certificate_configuration([(key, chain)], root)
