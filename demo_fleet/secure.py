"""`metrics-mesh demo --secure`: the demo's own certificates, tokens and login.

`write_credentials(run_dir)` writes into the run directory:

- `tls/`: a CA, a server certificate for 127.0.0.1 and localhost (every server of the demo
  presents it, and dials with it under mutual TLS) and a client certificate, all from
  `metricsmesh_cli.certs` (a browser needs no certificate: the gateway's HTTPS asks none,
  `[gateway] https_client_auth = false`, and the login guards it);
- `token`: a static API token with the `admin` scope, for the operator's grpcurl and curl;
- `password`: the password of the login `demo` (`POST /auth/login`).

Secrets are files of mode 0600 and the config holds only their hashes, except what a client
of the mesh must send itself: `[auth] jwt_secret` and `client_token` (a second static token,
scopes `write` and `gateway`, that the gateway, the pusher and the CLI send: the gateway
needs `gateway` for its reserved subscriber slots; this local demo lets the others share
it), which is why the generated config is mode 0600 too. `check_mesh` decides what the
user's file may hold with or without `--secure`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_common.auth import token_digest
from mesh_common.auth_settings import SECTION as AUTH
from mesh_common.config import ENV_ROOT, MeshFile
from mesh_common.errors import ConfigError
from mesh_common.passwords import hash_password
from mesh_common.tls import SECTION as TLS
from mesh_common.tls import TlsSettings
from metricsmesh_cli.certs import Certificates, write_certificates, write_private

HOSTS = ("127.0.0.1", "localhost")
"""The names the demo's server certificate is valid for (every demo process binds loopback)."""
USERNAME = "demo"
"""The login the secure demo configures."""
OPERATOR_TOKEN_NAME = "demo-operator"
MESH_TOKEN_NAME = "demo-mesh"
TLS_DIR = "tls"
TOKEN_FILE = "token"
PASSWORD_FILE = "password"
SECURED_TABLES = ("tls", "auth")
"""The tables `--secure` writes itself, whatever the user's file says."""


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """What `write_credentials` wrote and made: files, and the secrets a client sends."""

    certificates: Certificates
    token: str
    """The operator's static API token (scope admin); its text is in `token_file`."""
    token_file: Path
    password: str
    """The password of the login `USERNAME`; its text is in `password_file`."""
    password_file: Path
    jwt_secret: str
    mesh_token: str
    """The `client_token` of the mesh's own clients (scopes write and gateway)."""

    @property
    def server_tls(self) -> TlsSettings:
        """The `[tls]` of every demo process: the server certificate, the CA, mutual TLS."""
        files = self.certificates
        return TlsSettings(
            ca_file=str(files.ca),
            cert_file=str(files.server),
            key_file=str(files.server_key),
            client_auth=True,
        )

    @property
    def client_tls(self) -> TlsSettings:
        """The `[tls]` of a client (the demo's probes): the client certificate and the CA."""
        files = self.certificates
        return TlsSettings(
            ca_file=str(files.ca),
            cert_file=str(files.client),
            key_file=str(files.client_key),
            client_auth=True,
        )

    def tables(self) -> dict[str, Any]:
        """The generated config's `[tls]` and `[auth]` tables."""
        tls = self.server_tls
        password_hash = hash_password(self.password)
        return {
            "tls": {
                "ca_file": tls.ca_file,
                "cert_file": tls.cert_file,
                "key_file": tls.key_file,
                "client_auth": True,
            },
            "auth": {
                "jwt_secret": self.jwt_secret,
                "client_token": self.mesh_token,
                "public_consolidated": False,
                "api_tokens": [
                    {
                        "name": OPERATOR_TOKEN_NAME,
                        "sha256": token_digest(self.token),
                        "scopes": ["admin"],
                    },
                    {
                        "name": MESH_TOKEN_NAME,
                        "sha256": token_digest(self.mesh_token),
                        "scopes": ["write", "gateway"],
                    },
                ],
                "users": [
                    {"username": USERNAME, "password_hash": password_hash, "scopes": ["admin"]}
                ],
            },
        }


def write_credentials(run_dir: Path) -> DemoCredentials:
    """Write the certificates, the token and the password into `run_dir` (module docstring)."""
    certificates = write_certificates(run_dir / TLS_DIR, HOSTS)
    token = f"mm_{secrets.token_urlsafe(32)}"
    password = secrets.token_urlsafe(12)
    credentials = DemoCredentials(
        certificates=certificates,
        token=token,
        token_file=run_dir / TOKEN_FILE,
        password=password,
        password_file=run_dir / PASSWORD_FILE,
        jwt_secret=secrets.token_urlsafe(48),
        mesh_token=f"mm_{secrets.token_urlsafe(32)}",
    )
    write_private(credentials.token_file, f"{token}\n".encode())
    write_private(credentials.password_file, f"{password}\n".encode())
    return credentials


def check_mesh(mesh: MeshFile, *, secure: bool) -> None:
    """Refuse what the demo cannot honour; ConfigError naming it and what to do.

    Without `--secure` the demo is plaintext and open: a `[tls]` or an `[auth]` that checks
    tokens is refused. With it, the demo's own tables replace the file's (`replaced_tables`),
    but an environment variable would override them in every child, so one is refused.
    """
    if secure:
        prefixes = tuple(f"{ENV_ROOT}{table.upper()}_" for table in SECURED_TABLES)
        overriding = sorted(name for name in mesh.environ if name.startswith(prefixes))
        if overriding:
            raise ConfigError(
                f"--secure writes its own [tls] and [auth], which {', '.join(overriding)} "
                "would override in every process; unset them to run it"
            )
        return
    if mesh.read(TLS).enabled:  # its services' agents and its probes are plaintext
        raise ConfigError(
            f"{mesh.source}: the demo runs plaintext; remove [tls] (and METRICS_MESH_TLS_* "
            "variables) to run it, or run `metrics-mesh demo --secure`, which makes its own"
        )
    if mesh.read(AUTH).enabled:
        raise ConfigError(
            f"{mesh.source}: the demo runs without tokens; remove [auth] (and "
            "METRICS_MESH_AUTH_* variables) to run it, or run `metrics-mesh demo --secure`, "
            "which makes its own"
        )


def replaced_tables(tables: Mapping[str, Any]) -> list[str]:
    """The tables of the user's file that `--secure` replaces with its own (`[tls]`, ...)."""
    return [f"[{table}]" for table in SECURED_TABLES if table in tables]
