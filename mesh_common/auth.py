"""Bearer tokens to identities with scopes: the one check the gateway and the aggregator share.

    verifier = Verifier(settings)                 # settings: the `[auth]` table
    identity = verifier.identify(token)           # TokenError: 401 / UNAUTHENTICATED
    identity.require("write")                     # ScopeError: 403 / PERMISSION_DENIED

A token is either a JWT (three dot-separated parts: HS256 with `jwt_secret`, RS256/ES256 with
the key of `jwt_public_key_file` or the key its header's `kid` names in `jwks_file`,
`mesh_common.jwks`; `exp` required, `scope` a space-separated list as in OAuth)
or a static API token, known by its SHA-256 (`[[auth.api_tokens]]`). Every comparison of a
secret uses `hmac.compare_digest`; expiry is read from the injected wall clock. Errors:

    AuthError
     +-- TokenError     no token, a bad one, an expired one (the message never quotes it)
     +-- ScopeError     a good token without the scope the call needs
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import jwt
import jwt.types

from mesh_common.auth_settings import ALL_SCOPES, AuthSettings, User, expand_scopes
from mesh_common.clocks import SYSTEM_CLOCKS, Clocks
from mesh_common.errors import ConfigError, ScopeError, TokenError
from mesh_common.jwks import KeySet
from mesh_common.passwords import check_password, hash_password

ISSUER = "metrics-mesh"
"""The `iss` of the tokens /auth/login issues."""
VERIFIED_JWTS = 4096
"""Verified JWTs remembered (about 300 bytes each); the oldest goes first."""
SYMMETRIC = ("HS256",)
ASYMMETRIC = ("RS256", "ES256")
_OPTIONS: jwt.types.Options = {
    "verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["exp"],
}  # fmt: skip
"""pyjwt reads time claims from the system clock: they are checked here with the injected one."""


@functools.cache
def _dummy_hash() -> str:
    """Checked for an unknown username, so that a login takes as long either way."""
    return hash_password("no such user")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token speaks for and what it may do."""

    name: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        """Raise ScopeError when this identity lacks `scope` (admin implies write implies read)."""
        if scope not in self.scopes:
            raise ScopeError(self.name, scope)


def _check_time(now: float, expires: float, not_before: float) -> None:
    if expires <= now:
        raise TokenError("the bearer token has expired; log in again")
    if not_before > now:
        raise TokenError("the bearer token is not valid yet (nbf)")


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer TOKEN` value; TokenError when there is none."""
    if not header:
        raise TokenError("this call needs `Authorization: Bearer <token>`")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("the Authorization header must read `Bearer <token>`")
    return token.strip()


def token_digest(token: str) -> str:
    """The SHA-256 hex of a static token, as `[[auth.api_tokens]] sha256` holds it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Verifier:
    """Turns bearer tokens into identities, and logins into tokens (module docstring)."""

    def __init__(self, settings: AuthSettings, *, clocks: Clocks = SYSTEM_CLOCKS) -> None:
        self.settings = settings
        self._wall = clocks.wall
        self._keys: list[tuple[str | bytes, tuple[str, ...]]] = []
        if settings.jwt_secret:
            self._keys.append((settings.jwt_secret, SYMMETRIC))
        if settings.jwt_public_key_file:
            try:
                key = Path(settings.jwt_public_key_file).read_bytes()
            except OSError as error:
                raise ConfigError(f"[auth] jwt_public_key_file: cannot read it: {error}") from None
            self._keys.append((key, ASYMMETRIC))
        self._key_set = (
            KeySet(Path(settings.jwks_file), clocks.monotonic) if settings.jwks_file else None
        )
        self._tokens = tuple((token.sha256, token) for token in settings.api_tokens)
        self._users = {user.username: user for user in settings.users}
        # Verified JWTs by their SHA-256: a repeat costs a hash, not a signature check
        # (bench/bench_auth.py: 30 us -> about 3 us a request). Expiry is still checked each time.
        self._verified: dict[str, tuple[Identity, float, float]] = {}

    def identify(self, token: str) -> Identity:
        """The identity of `token`; TokenError when it is not valid now."""
        if token.count(".") == 2:
            return self._identify_jwt(token)
        digest = token_digest(token)
        found = None
        for known, api_token in self._tokens:  # every one compared: no early exit
            if hmac.compare_digest(known, digest):
                found = api_token
        if found is None:
            raise TokenError("the bearer token is not one of [auth] api_tokens")
        return Identity(found.name, found.scopes)

    def _identify_jwt(self, token: str) -> Identity:
        digest = token_digest(token)
        known = self._verified.get(digest)
        if known is not None:
            identity, expires, not_before = known
            _check_time(self._wall(), expires, not_before)
            return identity
        identity, expires, not_before = self._decode(token)
        _check_time(self._wall(), expires, not_before)
        if len(self._verified) >= VERIFIED_JWTS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[digest] = (identity, expires, not_before)
        return identity

    def _candidates(self, token: str) -> list[tuple[str | bytes | jwt.PyJWK, tuple[str, ...]]]:
        candidates: list[tuple[str | bytes | jwt.PyJWK, tuple[str, ...]]] = list(self._keys)
        if self._key_set is not None:
            key, algorithm = self._key_set.key_for(token)
            candidates.append((key, (algorithm,)))
        if not candidates:
            raise TokenError("JWTs are not accepted here (no [auth] jwt_secret or public key)")
        return candidates

    def _decode(self, token: str) -> tuple[Identity, float, float]:
        claims = None
        for key, algorithms in self._candidates(token):
            try:
                claims = jwt.decode(
                    token, key, algorithms=list(algorithms),
                    options=_OPTIONS,
                )  # fmt: skip
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as error:
                raise TokenError(f"the bearer token is not a valid JWT: {error}") from None
        if claims is None:
            raise TokenError("the bearer token's signature does not verify")
        expires, not_before = claims["exp"], claims.get("nbf", 0.0)
        if not isinstance(expires, int | float) or not isinstance(not_before, int | float):
            raise TokenError("the bearer token's exp and nbf must be numbers")
        scope = claims.get("scope", "")
        scopes = scope.split() if isinstance(scope, str) else []
        identity = Identity(str(claims.get("sub", "jwt")), expand_scopes(scopes))
        return identity, float(expires), float(not_before)

    def login(self, username: str, password: str) -> Identity:
        """The identity of a user whose password matches; TokenError otherwise.

        An unknown username costs one password check too, so timing does not tell them apart.
        """
        user: User | None = self._users.get(username)
        matches = check_password(password, user.password_hash if user else _dummy_hash())
        if user is None or not matches:
            raise TokenError("unknown username or wrong password")
        return Identity(user.username, user.scopes)

    def issue(self, identity: Identity) -> tuple[str, float]:
        """A signed HS256 JWT for `identity` and its lifetime in seconds."""
        if not self.settings.jwt_secret:
            raise ConfigError("[auth] jwt_secret: needed to sign tokens")
        now = self._wall()
        ttl = self.settings.token_ttl_seconds
        claims = {
            "sub": identity.name,
            "scope": " ".join(scope for scope in ALL_SCOPES if scope in identity.scopes),
            "iss": ISSUER,
            "iat": int(now),
            "exp": int(now + ttl),
        }
        return jwt.encode(claims, self.settings.jwt_secret, algorithm="HS256"), ttl
