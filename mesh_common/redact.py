"""Passwords out of what is printed: `redact(text)` masks every URL password in a text.

A configured URL may carry a password (`postgresql://mesh:s3cret@db/metrics`, or libpq's
`?password=s3cret`). `metrics-mesh config check` prints settings, log lines and error texts name
the database: each goes through `redact` first, which replaces the password of every URL in the
text (its userinfo, up to the last `@` of the URL, so an unencoded `@` in a password is covered
too) and every `password=` parameter (URL query or libpq's `key=value` form) with `***`. Given
the configured `url` as well, it also replaces that URL's password wherever else it appears (as
written and percent-decoded), for an error text that quotes it outside a URL.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
"""What stands in for a password."""

_USERINFO = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)[^\s]*@", re.IGNORECASE)
"""`scheme://user:` then the password up to the URL's last `@` (a URL has no whitespace)."""
_PARAMETER = re.compile(
    r"(?P<head>(?:[?&]|(?<![\w-]))password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&#]*)", re.IGNORECASE
)
"""`password=...` as a URL query parameter or a libpq `key=value` pair (quoted or not)."""
_SHORTEST = 4
"""A configured password shorter than this is masked inside URLs only (not as bare text)."""


def redact(text: str, url: str = "") -> str:
    """`text` with every URL password and `password=` value replaced by `***`.

    With `url` (the configured URL the text may quote), that URL's password is also replaced
    wherever it appears in `text`, as written and percent-decoded.
    """
    masked = _USERINFO.sub(lambda match: f"{match['head']}{MASK}@", text)
    masked = _PARAMETER.sub(lambda match: f"{match['head']}{MASK}", masked)
    for secret in sorted(_passwords(url), key=len, reverse=True):
        if len(secret) >= _SHORTEST:
            masked = masked.replace(secret, MASK)
    return masked


def _passwords(url: str) -> set[str]:
    """The password(s) `url` carries, as written and percent-decoded ({} for none)."""
    if not url:
        return set()
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        password = parts.password
        values = [value for key, value in parse_qsl(parts.query) if key == "password"]
    except ValueError:
        password, values = None, []
    if password:
        found |= {password, unquote(password)}
    found |= {value for value in values if value}
    return found
