"""Password hashes for `[[auth.users]]`: scrypt, in one documented text form.

A hash reads `scrypt$N$r$p$SALT$HASH`: the scrypt cost `N` (a power of two), block size `r`,
parallelism `p`, then the salt and the 32-byte derived key, both in hex:

    scrypt$16384$8$1$5f0c...$9a41...

`hash_password()` makes one (`metrics-mesh auth hash-password` prints one);
`check_password()` compares in constant time. A malformed hash is a ValueError naming the
part that is wrong, never the hash itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCHEME = "scrypt"
"""The first field of every hash."""
COST = 2**14
"""scrypt's N: about 16 MiB and a few tens of milliseconds per check."""
BLOCK_SIZE = 8
"""scrypt's r."""
PARALLELISM = 1
"""scrypt's p."""
KEY_BYTES = 32
"""Length of the derived key."""
SALT_BYTES = 16
"""Length of the random salt."""
_MAX_MEMORY = 256 * 1024 * 1024


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAX_MEMORY
    )


def hash_password(password: str, *, cost: int = COST) -> str:
    """A new `scrypt$N$r$p$SALT$HASH` hash of `password` with a random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, cost, BLOCK_SIZE, PARALLELISM, KEY_BYTES)
    return f"{SCHEME}${cost}${BLOCK_SIZE}${PARALLELISM}${salt.hex()}${key.hex()}"


def parse_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    """(N, r, p, salt, key) of a hash; ValueError naming what is wrong (not the hash)."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError("a password hash must read scrypt$N$r$p$SALT$HASH")
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, key = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        raise ValueError("a password hash's N, r, p must be integers, SALT and HASH hex") from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or not salt or not key:
        raise ValueError("a password hash's N must be a power of two, r in 1..64, p in 1..16")
    return n, r, p, salt, key


def check_password(password: str, password_hash: str) -> bool:
    """True when `password` matches `password_hash` (compared in constant time)."""
    n, r, p, salt, key = parse_hash(password_hash)
    return hmac.compare_digest(_derive(password, salt, n, r, p, len(key)), key)
