"""`metrics-mesh certs DIR --hosts ...`: a local CA and certificates, to try TLS out.

Writes into DIR: `ca.pem` and `ca-key.pem` (a CA valid 10 years), `server.pem` and
`server-key.pem` (valid for every host given, as IP or DNS names; also usable as a client
certificate, since a server such as the aggregator dials too), `gateway.pem` and
`gateway-key.pem` (the same hosts, subject CN `gateway`: the gateway serves HTTPS with it and
presents it to the aggregator, whose `[aggregator] trusted_clients = ["gateway"]` keeps the
reserved subscriber slots for it under mutual TLS), and `client.pem` and `client-key.pem`
(CN `metrics-mesh client`, for the CLI and other clients under mutual TLS). Keys are ECDSA
P-256; private keys are written with mode 0600. Not for production: a real fleet's
certificates come from its own CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh_common.config import MeshFile

DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")
"""The names the server certificate is valid for unless told otherwise."""
VALID_DAYS = 825
"""How long the server and client certificates are valid."""
CA_VALID_DAYS = 3650
"""How long the CA is valid."""
GATEWAY_NAME = "gateway"
"""The subject CN of the gateway's certificate (what `[aggregator] trusted_clients` names)."""
# A program that serves also dials (the aggregator dials its agents): its certificate is
# presented as a client certificate too under mutual TLS.
_BOTH_WAYS = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)


WILDCARDS = frozenset({"", "0.0.0.0", "::"})
"""Bind hosts that name no host a certificate could be valid for."""


def mesh_hosts(mesh: MeshFile) -> tuple[str, ...]:
    """DEFAULT_HOSTS and the hosts `mesh` binds or dials: [aggregator], [gateway], [[services]]."""
    from aggregator import SECTION as AGGREGATOR
    from gateway import SECTION as GATEWAY
    from mesh_common.registry import SERVICES

    gateway = mesh.read(GATEWAY, services_configured=0)
    hosts = [*DEFAULT_HOSTS, mesh.read(AGGREGATOR).host, gateway.host]
    hosts.extend(host for entry in mesh.read(SERVICES) for host in entry.hosts)
    return tuple(host for host in dict.fromkeys(hosts) if host not in WILDCARDS)


@dataclass(frozen=True, slots=True)
class Certificates:
    """The files `write_certificates` wrote."""

    ca: Path
    ca_key: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    gateway: Path
    gateway_key: Path

    def tls_lines(
        self, *, client: bool = False, client_auth: bool = True, gateway: bool = False
    ) -> str:
        """The `[tls]` table using these files: a server's, a client's or the gateway's."""
        cert, key = (self.server, self.server_key)
        if client:
            cert, key = (self.client, self.client_key)
        elif gateway:
            cert, key = (self.gateway, self.gateway_key)
        return (
            "[tls]\n"
            f'ca_file = "{self.ca}"\n'
            f'cert_file = "{cert}"\n'
            f'key_file = "{key}"\n'
            f"client_auth = {'true' if client_auth else 'false'}\n"
        )


def write_certificates(
    directory: str | os.PathLike[str],
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    now: datetime.datetime | None = None,
    valid_days: int = VALID_DAYS,
) -> Certificates:
    """Write a CA, server and gateway certificates for `hosts` and a client certificate.

    `now` and `valid_days` set the validity of the leaf certificates (an expired one for
    tests: a `now` in the past). Existing files in `directory` are overwritten.
    """
    folder = Path(directory).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    unique = secrets.token_hex(4)  # two CAs written apart are told apart by name too
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"metrics-mesh CA {unique}")])
    ca = (
        _builder(ca_name, ca_name, ca_key, start, CA_VALID_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    keys = {
        name: ec.generate_private_key(ec.SECP256R1()) for name in ("server", "gateway", "client")
    }

    def for_hosts(common_name: str, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (
            _leaf(ca_name, common_name, key, start, valid_days)
            .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
            .add_extension(_BOTH_WAYS, critical=False)
            .sign(ca_key, hashes.SHA256())
        )

    certificates = {
        "ca": ca,
        "server": for_hosts(hosts[0] if hosts else "metrics-mesh", keys["server"]),
        "gateway": for_hosts(GATEWAY_NAME, keys["gateway"]),
        "client": (
            _leaf(ca_name, "metrics-mesh client", keys["client"], start, valid_days)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        ),
    }
    keys["ca"] = ca_key
    files: dict[str, Path] = {}
    for name, certificate in certificates.items():
        files[name] = folder / f"{name}.pem"
        files[f"{name}_key"] = folder / f"{name}-key.pem"
        files[name].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_private(files[f"{name}_key"], keys[name])
    return Certificates(**files)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    start: datetime.datetime,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )


def _leaf(
    issuer: x509.Name,
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    start: datetime.datetime,
    days: int,
) -> x509.CertificateBuilder:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        _builder(subject, issuer, key, start, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=False), critical=True)
    )


def _usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not sign,
        key_cert_sign=sign,
        crl_sign=sign,
        encipher_only=False,
        decipher_only=False,
    )


def _names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, data)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by its owner only (mode 0600), whatever was there."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # a file that existed kept its mode through os.open
        file.write(data)
