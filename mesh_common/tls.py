"""The `[tls]` table: transport security of every gRPC hop and of the gateway's HTTPS.

[tls]
ca_file = "certs/ca.pem"          # the CA that signed the peers' certificates (PEM)
cert_file = "certs/server.pem"    # this program's certificate chain (PEM)
key_file = "certs/server-key.pem" # its private key (PEM, unencrypted)
client_auth = false               # mutual TLS: servers require a client certificate signed
                                  # by ca_file, clients present cert_file
server_name = ""                  # the name to verify in the server's certificate when it
                                  # differs from the dialled host

Every key empty (the default) keeps every hop plaintext. The files are checked when the table
is read: each exists, is PEM of the right kind, the key belongs to the certificate and the
certificate is valid now; a problem is a ConfigError naming the key. Relative paths are
relative to the working directory. `metrics-mesh certs DIR` writes a CA and certificates to try
it out. One table serves both ends: a server presents `cert_file`, a client verifies with
`ca_file` (and presents `cert_file` under `client_auth`).
"""

from __future__ import annotations

import datetime
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from mesh_common.config import Section, setting
from mesh_common.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The `[tls]` table (every key empty: plaintext, the default)."""

    ca_file: str = setting("", "PEM file of the CA that signed the peers' certificates")
    cert_file: str = setting("", "PEM file of this program's certificate (chain)")
    key_file: str = setting("", "PEM file of this program's private key (unencrypted)")
    client_auth: bool = setting(
        False,
        "mutual TLS: servers require a client certificate signed by ca_file, clients present "
        "cert_file",
    )
    server_name: str = setting(
        "", "the name to verify in the server's certificate when it differs from the host dialled"
    )

    def __post_init__(self) -> None:
        """Check the files: they exist, parse and fit together; ConfigError naming the key."""
        if bool(self.cert_file) != bool(self.key_file):
            given, missing = (
                ("cert_file", "key_file") if self.cert_file else ("key_file", "cert_file")
            )
            raise ConfigError(f"{missing}: must be set with {given}")
        if self.client_auth and not (self.ca_file and self.cert_file):
            raise ConfigError(
                "client_auth: mutual TLS needs ca_file (to verify the peer's certificate) and "
                "cert_file/key_file (to present one)"
            )
        if self.server_name and not self.enabled:
            raise ConfigError("server_name: only means something with ca_file or cert_file set")
        if self.ca_file:
            check_certificates("ca_file", read_pem("ca_file", self.ca_file))
        if self.cert_file:
            certificate = read_pem("cert_file", self.cert_file)
            check_certificates("cert_file", certificate)
            check_key("key_file", read_pem("key_file", self.key_file), certificate)

    @property
    def enabled(self) -> bool:
        """Whether the hops are TLS (a CA or a certificate is configured)."""
        return bool(self.ca_file or self.cert_file)

    @property
    def can_serve(self) -> bool:
        """Whether a server can present a certificate (cert_file and key_file are set)."""
        return bool(self.cert_file)


PLAINTEXT = TlsSettings()
"""No TLS: every hop plaintext."""


def https_client_context(tls: TlsSettings) -> ssl.SSLContext:
    """An SSL context for an HTTPS client of the gateway under `tls`.

    It verifies the server with `ca_file` (the system's roots when empty) and presents
    `cert_file` under `client_auth`. The name verified is the URL's host (`server_name` is
    gRPC's override and does not apply).
    """
    context = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.client_auth and tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def read_pem(key: str, path: str) -> bytes:
    """The bytes of the file named by `key`; ConfigError naming the key when unreadable."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path!r}: {error.strerror or error}") from None


def check_certificates(key: str, pem: bytes) -> None:
    """Check that `pem` holds certificates valid now; ConfigError naming `key` otherwise."""
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise ConfigError(f"{key}: not a PEM certificate: {error}") from None
    now = datetime.datetime.now(datetime.UTC)
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string()
        if certificate.not_valid_after_utc < now:
            raise ConfigError(
                f"{key}: the certificate {subject!r} expired on {certificate.not_valid_after_utc}"
            )
        if certificate.not_valid_before_utc > now:
            raise ConfigError(
                f"{key}: the certificate {subject!r} is not valid before "
                f"{certificate.not_valid_before_utc}"
            )


def check_key(key: str, pem: bytes, certificate_pem: bytes) -> None:
    """Check that `pem` is an unencrypted private key of `certificate_pem`'s certificate.

    Raises ConfigError naming `key` otherwise.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{key}: not an unencrypted PEM private key: {error}") from None
    public = x509.load_pem_x509_certificate(certificate_pem).public_key()
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, raw) != public.public_bytes(der, raw):
        raise ConfigError(f"{key}: the key does not belong to the certificate of cert_file")


_HANDSHAKE = re.compile(
    r"(?:tls|ssl) handshake failed(?: \((?P<code>\w+)\))?:?\s*(?P<reason>.*)", re.I
)
_REASONS = {
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS (a plaintext server?)",
    "CERTIFICATE_VERIFY_FAILED": (
        "its certificate is not signed by ca_file, has expired or is not valid for the name"
    ),
    "BAD_SIGNATURE": "its certificate is not signed by ca_file (another CA of the same name)",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate (another CA)",
    "TLSV1_CERTIFICATE_REQUIRED": "the peer requires a client certificate (client_auth)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
    "TLSV1_ALERT_DECRYPT_ERROR": "the peer refused our certificate",
}


def handshake_failure(details: str) -> str | None:
    """Why a TLS handshake failed ("TLS: ..."), from a gRPC error's details.

    None when the details are not a TLS handshake failure.
    """
    match = _HANDSHAKE.search(details)
    if match is None:
        return None
    reason = match["reason"].removesuffix(": OK").strip()
    known = next((text for name, text in _REASONS.items() if name in reason), None)
    return (
        f"TLS: handshake failed: {known} ({reason})"
        if known
        else f"TLS: handshake failed: {reason}"
    )


_CLOSED_AT_ONCE = re.compile(r"failed to connect to all addresses.*: Socket closed", re.S)
"""What gRPC says when a connection was closed before its HTTP/2 handshake ended."""


def connection_failure(details: str, *, plaintext: bool) -> str | None:
    """Why a connection failed when TLS is the likely cause, from a gRPC error's details.

    "TLS: handshake failed: ..." for a failed handshake (`handshake_failure`). Over a
    plaintext channel (`plaintext`), a peer that closed new connections at once is most often
    a TLS server reading our plaintext as a broken handshake (else one at its connection
    limit); gRPC only says "Socket closed", so the text says what to check. None when
    neither applies (a peer that went away mid-call is not one of these).
    """
    handshake = handshake_failure(details)
    if handshake is not None or not plaintext or not _CLOSED_AT_ONCE.search(details):
        return handshake
    return (
        "TLS: the peer closed the plaintext connection at once: it may require TLS (this end "
        f"has no [tls] table) or be at its connection limit (UNAVAILABLE: {details})"
    )


SECTION = Section("tls", TlsSettings, "TLS and mutual TLS on every gRPC hop and the gateway")
"""The `[tls]` table's declaration."""
