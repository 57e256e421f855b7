"""Writing a mesh configuration back out as TOML (the demo hands one file to every process)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string.
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):  # an inline table
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write a {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(name: str, content: Mapping[str, Any], header: str) -> list[str]:
    """One table (or one item of an array of tables) and the arrays of tables inside it."""
    lines = [header]
    nested = {key: value for key, value in content.items() if _is_table_array(value)}
    lines.extend(f"{key} = {_value(value)}" for key, value in content.items() if key not in nested)
    lines.append("")
    for key, items in nested.items():
        for item in items:
            lines.extend(_table(f"{name}.{key}", item, f"[[{name}.{key}]]"))
    return lines


def dumps(document: Mapping[str, Any]) -> str:
    """TOML text for `document`.

    Top-level tables and arrays of tables, arrays of tables inside a table
    (`[[alerts.rules]]`), and inline tables for mappings inside those.
    """
    lines: list[str] = []
    for name, content in document.items():
        if isinstance(content, Mapping):
            lines.extend(_table(name, content, f"[{name}]"))
        elif _is_table_array(content):
            for item in content:
                lines.extend(_table(name, item, f"[[{name}]]"))
        elif content != []:
            raise ValueError(f"top-level key {name!r}: only tables are written")
    return "\n".join(lines)
