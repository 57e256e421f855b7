"""OpenTelemetry names in Prometheus's syntax (OTLP metric names and attribute keys).

Every character outside the syntax becomes `_`: `http.server.active_requests` ->
`http_server_active_requests`. A metric name starting with a digit gets a leading `_`, a
label name `key_` (OpenTelemetry's Prometheus compatibility rules). Nothing else is changed:
no unit or `_total` suffix is added (the type and unit travel with the series). Both are
cached (bounded): a request repeats the same few names.
"""

from __future__ import annotations

import functools
import re

_METRIC_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
CACHED_NAMES = 4096
"""Names each cache keeps (a hostile stream of new names only churns it)."""


@functools.lru_cache(maxsize=CACHED_NAMES)
def metric_name(name: str) -> str:
    """`name` as a Prometheus metric name (empty stays empty: the path refuses it)."""
    converted = _METRIC_INVALID.sub("_", name)
    return "_" + converted if converted[:1].isdigit() else converted


@functools.lru_cache(maxsize=CACHED_NAMES)
def label_name(name: str) -> str:
    """`name` as a Prometheus label name."""
    converted = _LABEL_INVALID.sub("_", name)
    return "key_" + converted if converted[:1].isdigit() else converted
