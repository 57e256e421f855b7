"""Certificates for the TLS tests: `[tls]` tables of them, rotation on disk, what a peer shows.

`serving(files)` is a server's table, `client(files)` a client's under mutual TLS,
`https_client(files)` an `ssl` context verifying with the CA and presenting the client
certificate; `replace` and `install` put files in place as a deployment tool would (one
rename each); `shown_certificate` is the certificate a new TLS connection is shown;
`running` runs `metrics-mesh ARGS` for the length of a block.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from cryptography import x509

from mesh_common.tls import TlsSettings
from metricsmesh_cli.certs import Certificates
from tests.cli import METRICS_MESH


def serving(files: Certificates, *, client_auth: bool = True) -> TlsSettings:
    """A server's (or the aggregator's) `[tls]`: its certificate, the CA, mutual TLS."""
    return TlsSettings(
        ca_file=str(files.ca),
        cert_file=str(files.server),
        key_file=str(files.server_key),
        client_auth=client_auth,
    )


def client(files: Certificates) -> TlsSettings:
    """A client's `[tls]` under mutual TLS: the CA and the client certificate."""
    return TlsSettings(
        ca_file=str(files.ca),
        cert_file=str(files.client),
        key_file=str(files.client_key),
        client_auth=True,
    )


def https_client(files: Certificates) -> ssl.SSLContext:
    """A client context verifying with `files`' CA and presenting its client certificate."""
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(str(files.client), str(files.client_key))
    return context


def replace(source: Path, target: Path) -> None:
    """Put `source`'s content at `target` in one step, as a deployment tool would."""
    staging = target.with_suffix(".new")
    shutil.copyfile(source, staging)
    os.replace(staging, target)


def install(source: Certificates, target: Path) -> Certificates:
    """Every file of `source` put in directory `target` (made if needed), one rename each.

    Returns the installed files. The CA comes last: a peer that reads the set halfway sees
    a key and certificate that fit, under the old CA at worst.
    """
    target.mkdir(parents=True, exist_ok=True)
    placed = {
        field.name: target / getattr(source, field.name).name
        for field in dataclasses.fields(source)
    }
    for name in sorted(placed, key=lambda name: name == "ca"):
        replace(getattr(source, name), placed[name])
    return dataclasses.replace(source, **placed)


def certificate_of(path: Path) -> x509.Certificate:
    """The (first) certificate of a PEM file."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def shown_certificate(port: int, context: ssl.SSLContext | None = None) -> x509.Certificate:
    """The certificate a new TLS connection to 127.0.0.1:`port` is shown.

    Without `context` nothing is verified; with one the handshake verifies as it says (an
    `ssl.SSLError` when it fails).
    """
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@asynccontextmanager
async def running(*args: str) -> AsyncIterator[asyncio.Future[bytes]]:
    """`metrics-mesh ARGS` until the block ends (SIGTERM); yields its future output."""
    process = await asyncio.create_subprocess_exec(
        str(METRICS_MESH), *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    try:
        yield output
    finally:
        if process.returncode is None:
            process.terminate()
        out, _ = await asyncio.wait_for(process.communicate(), timeout=20)
        output.set_result(out)
