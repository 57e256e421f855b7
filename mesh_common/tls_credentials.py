"""gRPC credentials from the `[tls]` table, and `Rotation`: when its files were rotated.

A server's credentials re-read the files when they change: before each new connection's
handshake gRPC asks `RotatingFiles` for the certificate to use, which asks its `Rotation`
(three `stat` calls: the files' modification times and sizes against those last loaded) and
loads the files again when they changed, so rotated certificates are used by new connections
without a restart. A half-written or broken set is logged once and the previous one kept. A
channel's credentials are read when the channel is opened: a long-lived client asks a
`Rotation` now and then and opens new channels when it says so (the aggregator before each
round, the gateway's links to the aggregator every few seconds); the gateway's HTTPS context
does the same per handshake (`mesh_common.tls_https`).
"""

from __future__ import annotations

import dataclasses
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


class Rotation:
    """Tells when the files of a `[tls]` table were rotated into a new set that fits together.

    `check()` compares the files' modification times and sizes (three `stat` calls) with
    those of the last check. When they changed, it checks the new set as at load (each file
    readable, the key of the certificate, valid now): True when it fits, else a warning
    naming the problem, logged once per change, and False (the caller keeps what it has).
    Thread-safe: gRPC asks from its own threads.
    """

    def __init__(self, tls: TlsSettings, *, keeping: str) -> None:
        """`keeping` ends the warning about a broken set: what the caller goes on using."""
        self._tls = tls
        self._keeping = keeping
        self._lock = threading.Lock()
        self._stamp = _stamp(tls)
        self.rotations = 0
        """How many rotated sets `check()` has reported."""

    def check(self) -> bool:
        """True once per change of the files into a set that fits together."""
        stamp = _stamp(self._tls)
        with self._lock:
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                dataclasses.replace(self._tls)  # the checks of the table's load
            except ConfigError as error:
                _LOG.warning("[tls] the files changed but %s; %s", error, self._keeping)
                return False
            self.rotations += 1
            return True


def _stamp(tls: TlsSettings) -> Stamp | None:
    """The stamp of the files (None when one cannot be read: the check will say why)."""
    try:
        return files_stamp(tls)
    except OSError:
        return None


class RotatingFiles:
    """The server's certificate configuration, loaded again whenever its files are rotated."""

    def __init__(self, tls: TlsSettings) -> None:
        self._tls = tls
        self._rotation = Rotation(tls, keeping="keeping the old certificate")
        self.initial = self._load()
        """The configuration the server starts with."""

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """The new configuration when the files were rotated since the last load, else None."""
        if not self._rotation.check():
            return None
        try:
            configuration = self._load()
        except ConfigError as error:  # changed again since the check
            _LOG.warning("[tls] the files changed but %s; keeping the old certificate", error)
            return None
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
