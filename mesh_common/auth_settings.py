"""The `[auth]` table: who may call the gateway and the aggregator, and with which scopes.

[auth]
jwt_secret = ""                 # HS256 key: verifies JWTs and signs /auth/login's tokens
jwt_public_key_file = ""        # PEM public key: verifies RS256/ES256 JWTs
jwks_file = ""                  # JSON Web Key Set: verifies RS256/ES256 JWTs by their kid
token_ttl_seconds = 3600.0      # lifetime of a token issued by /auth/login
public_consolidated = true      # /api/v1/real-time-metrics answers without a token
client_token = ""               # the token the gateway and the CLI send to the aggregator
login_attempts_per_minute = 5   # failed logins allowed per client and per user

[[auth.api_tokens]]             # a static token, stored as the SHA-256 hex of its text
name = "ci"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
scopes = ["write"]

[[auth.users]]                  # a login of /auth/login (metrics-mesh auth hash-password)
username = "user"
password_hash = "scrypt$16384$8$1$...$..."
scopes = ["read"]

Authentication is on only when the table configures a way to check a token (a JWT key, an
API token or a user): with none, every endpoint stays open as without the table. Scopes are
`read`, `write` and `admin`; `admin` implies `write`, which implies `read`. Beside them,
`gateway` marks the mesh's own gateway: the aggregator keeps its reserved StreamSnapshots
slots for callers holding it, with no per-caller cap (`[aggregator] reserved_subscribers`). It
implies nothing else, so the gateway's token carries `read` (or `write`) too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh_common.config import Key, Section, setting
from mesh_common.errors import ConfigError
from mesh_common.passwords import parse_hash

SCOPES = ("read", "write", "admin")
"""The access scopes, weakest first: each implies the ones before it."""
GATEWAY_SCOPE = "gateway"
"""The scope of the mesh's gateway: the reserved subscriber slots, no per-caller cap; no access."""
ALL_SCOPES = (*SCOPES, GATEWAY_SCOPE)
"""Every scope a token or a user may carry."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


def expand_scopes(scopes: tuple[str, ...] | list[str]) -> frozenset[str]:
    """`scopes` with everything they imply (`admin` -> write, read); unknown names dropped."""
    granted: set[str] = set()
    for scope in scopes:
        if scope in SCOPES:
            granted.update(SCOPES[: SCOPES.index(scope) + 1])
        elif scope == GATEWAY_SCOPE:
            granted.add(scope)
    return frozenset(granted)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One `[[auth.api_tokens]]` table: a static token known by its SHA-256."""

    name: str
    sha256: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class User:
    """One `[[auth.users]]` table: a login for `/auth/login`."""

    username: str
    password_hash: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """The `[auth]` table (its arrays are read into `api_tokens` and `users`)."""

    jwt_secret: str = setting("", "HS256 key: verifies JWTs and signs /auth/login's tokens")
    jwt_public_key_file: str = setting("", "PEM public key file verifying RS256/ES256 JWTs")
    jwks_file: str = setting(
        "", "JSON Web Key Set file verifying RS256/ES256 JWTs by their kid (re-read on change)"
    )
    token_ttl_seconds: float = setting(3600.0, "lifetime of a token issued by /auth/login")
    public_consolidated: bool = setting(
        True, "/api/v1/real-time-metrics (story 23.2) answers without a token"
    )
    client_token: str = setting(
        "", "the bearer token the gateway and the CLI send to the aggregator"
    )
    login_attempts_per_minute: int = setting(5, "failed logins allowed per client and per user")
    api_tokens: tuple[ApiToken, ...] = ()
    """The `[[auth.api_tokens]]` tables."""
    users: tuple[User, ...] = ()
    """The `[[auth.users]]` tables."""

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key (never a secret's value)."""
        if not (math.isfinite(self.token_ttl_seconds) and self.token_ttl_seconds > 0):
            raise ConfigError(f"token_ttl_seconds: {self.token_ttl_seconds} must be > 0")
        if not 1 <= self.login_attempts_per_minute <= 10_000:
            raise ConfigError("login_attempts_per_minute: must be in 1..10000")
        if self.jwt_secret and len(self.jwt_secret) < 32:
            raise ConfigError("jwt_secret: must be at least 32 characters (HS256 wants 256 bits)")
        if self.users and not self.jwt_secret:
            raise ConfigError("users: /auth/login signs its tokens with jwt_secret; set it")

    @property
    def enabled(self) -> bool:
        """True when a token can be checked: a JWT key, an API token or a user."""
        return bool(
            self.jwt_secret
            or self.jwt_public_key_file
            or self.jwks_file
            or self.api_tokens
            or self.users
        )


def check_admin_token(table: str, admin_token: str, auth: AuthSettings | None) -> None:
    """ConfigError when `[table] admin_token` is set beside `[auth]`.

    A call carries one Authorization header: with both, an alert write would need a token
    that is both the admin token and a bearer token with the write scope. `[auth]`'s scopes
    replace the older admin token.
    """
    if admin_token and auth is not None and auth.enabled:
        raise ConfigError(
            f"[{table}] admin_token: with [auth] on, alert writes need a bearer token with the "
            "write scope; remove admin_token"
        )


def _scopes(where: str, table: Mapping[str, Any]) -> frozenset[str]:
    scopes = table.get("scopes", ["read"])
    if not isinstance(scopes, list) or not all(scope in ALL_SCOPES for scope in scopes):
        raise ConfigError(f"{where} scopes: must be a list of {', '.join(ALL_SCOPES)}")
    return expand_scopes(scopes)


def _table(where: str, item: object, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(item) - {*keys, "scopes"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    for key in keys:
        if not isinstance(item.get(key), str) or not item[key]:
            raise ConfigError(f"{where} {key}: must be a non-empty string")
    return item


def _api_token(index: int, item: object) -> ApiToken:
    where = f"[[auth.api_tokens]] {index}"
    table = _table(where, item, ("name", "sha256"))
    if not _SHA256.fullmatch(table["sha256"]):
        raise ConfigError(f"{where} sha256: must be 64 lower-case hex digits (sha256sum)")
    return ApiToken(table["name"], table["sha256"], _scopes(where, table))


def _user(index: int, item: object) -> User:
    where = f"[[auth.users]] {index}"
    table = _table(where, item, ("username", "password_hash"))
    try:
        parse_hash(table["password_hash"])
    except ValueError as error:
        raise ConfigError(f"{where} password_hash: {error}") from None
    return User(table["username"], table["password_hash"], _scopes(where, table))


def _array(table: dict[str, Any], key: str) -> list[object]:
    value = table.pop(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"[auth] {key} must be an array of tables ([[auth.{key}]])")
    return value


_TABLE = Section(
    "auth", AuthSettings, "bearer tokens, logins and scopes", derived=("api_tokens", "users")
)


class AuthSection:
    """The declaration of the `[auth]` table: its keys and its two arrays of tables."""

    table = "auth"
    summary = _TABLE.summary

    def parse(self, value: object, environ: Mapping[str, str], **derived: Any) -> AuthSettings:
        """The settings of the table (None: defaults, authentication off); ConfigError if bad."""
        table = dict(value) if isinstance(value, Mapping) else value
        tokens: list[object] = []
        users: list[object] = []
        if isinstance(table, dict):
            tokens, users = _array(table, "api_tokens"), _array(table, "users")
        parsed = tuple(_api_token(index, item) for index, item in enumerate(tokens))
        if len({token.name for token in parsed}) != len(parsed):
            raise ConfigError("[auth] api_tokens: two tokens have the same name")
        people = tuple(_user(index, item) for index, item in enumerate(users))
        if len({user.username for user in people}) != len(people):
            raise ConfigError("[auth] users: two users have the same username")
        return _TABLE.parse(table, environ, api_tokens=parsed, users=people)

    def keys(self) -> tuple[Key, ...]:
        """The table's keys (the arrays' keys are in this module's docstring)."""
        return _TABLE.keys()

    def help_text(self) -> str:
        """The keys and their environment variables, for `--help`."""
        return _TABLE.help_text()


SECTION = AuthSection()
"""The `[auth]` table's declaration."""
