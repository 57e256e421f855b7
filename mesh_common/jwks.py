"""`[auth] jwks_file`: the public keys of an identity provider, as a JSON Web Key Set file.

    {"keys": [{"kty": "RSA", "kid": "2026-12", "alg": "RS256", "n": "...", "e": "AQAB"},
              {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "...", "y": "..."}]}

A JWT names its key in its header's `kid`; a set of one key also verifies tokens without a
`kid`. Only RS256 and ES256 keys are used (never a symmetric `oct` key: the set is public).
The file is read again when it changes on disk (a provider's key rotation, written by a
sidecar), checked at most once a second; a set that fails to read keeps the last good one
and says why once. Nothing here is cached per token: `mesh_common.auth` caches verified
tokens.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import jwt

from mesh_common.clocks import ReadClock
from mesh_common.errors import ConfigError, TokenError

_LOG = logging.getLogger("mesh_common.auth")
ALGORITHMS = frozenset({"RS256", "ES256"})
"""The signatures a key of the set may verify."""
RECHECK_SECONDS = 1.0
"""How often the file's modification time is looked at."""

Stamp = tuple[int, int, int]
"""A file's (inode, size, mtime_ns): what tells a rewritten file."""


def _stamp(path: Path) -> Stamp:
    status = os.stat(path)
    return status.st_ino, status.st_size, status.st_mtime_ns


def read_key_set(path: Path) -> dict[str | None, tuple[jwt.PyJWK, str]]:
    """The usable keys of the set at `path` by `kid`; ConfigError naming what is wrong."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError("the document must be an object with a `keys` array")
        key_set = jwt.PyJWKSet.from_dict(document)
    except OSError as error:
        raise ConfigError(f"[auth] jwks_file: cannot read it: {error}") from None
    except (jwt.PyJWKSetError, ValueError) as error:
        raise ConfigError(f"[auth] jwks_file: {path} is not a JWK set: {error}") from None
    keys: dict[str | None, tuple[jwt.PyJWK, str]] = {}
    for key in key_set.keys:
        algorithm = key.algorithm_name
        if algorithm not in ALGORITHMS:
            continue
        keys[key.key_id] = (key, algorithm)
    if not keys:
        raise ConfigError(f"[auth] jwks_file: {path} has no RS256 or ES256 key")
    return keys


class KeySet:
    """The keys of `[auth] jwks_file`, re-read when the file changes (module docstring)."""

    def __init__(self, path: Path, monotonic: ReadClock) -> None:
        self.path = path
        self._monotonic = monotonic
        self._keys = read_key_set(path)
        self._stamp = _stamp(path)
        self._checked = monotonic()
        self._failure: str | None = None

    def key_for(self, token: str) -> tuple[jwt.PyJWK, str]:
        """The key and algorithm verifying `token`, by its `kid`; TokenError when none does."""
        self._refresh()
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.DecodeError as error:
            raise TokenError(f"the bearer token is not a valid JWT: {error}") from None
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        found = self._keys.get(kid) if isinstance(kid, str) else None
        if found is None:
            raise TokenError("the bearer token's kid is not a key of [auth] jwks_file")
        return found

    def _refresh(self) -> None:
        now = self._monotonic()
        if now - self._checked < RECHECK_SECONDS:
            return
        self._checked = now
        try:
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return
            self._keys = read_key_set(self.path)
            self._stamp, self._failure = stamp, None
            _LOG.info("[auth] jwks_file: read %d keys from %s", len(self._keys), self.path)
        except (OSError, ConfigError) as error:
            if str(error) != self._failure:
                self._failure = str(error)
                _LOG.warning("[auth] jwks_file: keeping the last good keys: %s", error)
