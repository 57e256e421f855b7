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
    raise ValueError(f"cannot write a {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def dumps(document: Mapping[str, Any]) -> str:
    """TOML text for `document`: top-level tables of scalars/lists and arrays of tables."""
    lines: list[str] = []
    for name, content in document.items():
        if isinstance(content, Mapping):
            lines.append(f"[{name}]")
            lines.extend(f"{key} = {_value(value)}" for key, value in content.items())
            lines.append("")
        elif _is_table_array(content):
            for item in content:
                lines.append(f"[[{name}]]")
                lines.extend(f"{key} = {_value(value)}" for key, value in item.items())
                lines.append("")
        elif content != []:
            raise ValueError(f"top-level key {name!r}: only tables are written")
    return "\n".join(lines)
