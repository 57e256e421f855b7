"""Which line of a mesh file holds a value: the line a `ConfigError` points at, for people.

`line_of(text, location)` finds the line of a `ConfigError.location` (`("services", 1,
"port")`: the key `port` of the second `[[services]]` table; `("aggregator", "port")`) in
the file's text, as a person would: by its table header, then its key. It reads headers
and `key =` lines only (the usual layout of a mesh file); a value it cannot place (an inline
table, a dotted key) gives the header's line, or None. `syntax_error_line()` is the line of
a TOML syntax error.
"""

from __future__ import annotations

import re
import tomllib

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]\s]+)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")
_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")
"""How tomllib's messages give the position (Python 3.14 adds `lineno`)."""


def line_of(text: str, location: tuple[str | int, ...]) -> int | None:
    """The 1-based line of `location` in `text`; the table's header line without the key."""
    if not location or not isinstance(location[0], str):
        return None
    table = location[0]
    index = location[1] if len(location) > 1 and isinstance(location[1], int) else None
    key = next((part for part in location[1:] if isinstance(part, str)), None)
    seen = -1
    header: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _HEADER.match(line)
        if match is not None:
            if header is not None:
                return header  # the table ended without the key
            if match.group(2) == table and (match.group(1) == "[[") == (index is not None):
                seen += 1
                if index is None or seen == index:
                    header = number
            continue
        if header is not None and key is not None and _key(line) == key:
            return number
    return header


def syntax_error_line(error: tomllib.TOMLDecodeError) -> int | None:
    """The line a TOML syntax error is on (None when the message does not say)."""
    line = getattr(error, "lineno", None)
    if isinstance(line, int):
        return line
    match = _AT_LINE.search(str(error))
    return int(match.group(1)) if match else None


def key_on_line(text: str, line: int) -> str | None:
    """The key a `key = value` line sets (None for any other line)."""
    lines = text.splitlines()
    return _key(lines[line - 1]) if 0 < line <= len(lines) else None


def _key(line: str) -> str | None:
    match = _KEY.match(line)
    if match is None:
        return None
    return match.group(1) or match.group(2) or match.group(3)
