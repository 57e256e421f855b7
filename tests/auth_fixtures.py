"""An `[auth]` table for tests: a JWT secret, static tokens per scope and one user.

`GATEWAY_TOKEN` is the gateway's `client_token`, as the README configures it: `write` (it
forwards OTLP/HTTP pushes) and `gateway` (the aggregator's reserved subscriber slots).
"""

from __future__ import annotations

import jwt

from mesh_common.auth import token_digest
from mesh_common.auth_settings import SECTION, AuthSettings
from mesh_common.passwords import hash_password

SECRET = "test-secret-of-at-least-thirty-two-characters"
READ_TOKEN = "read-token-value"
WRITE_TOKEN = "write-token-value"
GATEWAY_TOKEN = "gateway-token-value"
PASSWORD = "pass"
_PASSWORD_HASH = hash_password(PASSWORD, cost=2**10)  # cheap: tests check many logins


def auth_settings(**changes: object) -> AuthSettings:
    """The tests' `[auth]` table, read through its real declaration."""
    table = {
        "jwt_secret": SECRET,
        "client_token": GATEWAY_TOKEN,
        "api_tokens": [
            {"name": "reader", "sha256": token_digest(READ_TOKEN), "scopes": ["read"]},
            {"name": "writer", "sha256": token_digest(WRITE_TOKEN), "scopes": ["write"]},
            {
                "name": "gateway",
                "sha256": token_digest(GATEWAY_TOKEN),
                "scopes": ["write", "gateway"],
            },
        ],
        "users": [{"username": "user", "password_hash": _PASSWORD_HASH, "scopes": ["write"]}],
        **changes,
    }
    return SECTION.parse(table, {})


def signed(claims: dict[str, object], secret: str = SECRET) -> str:
    """A HS256 JWT of `claims`."""
    return jwt.encode(claims, secret, algorithm="HS256")
