"""Logging of every program of the mesh: one stderr handler, as text or as JSON lines.

`configure(level, log_format)` is called once at start by each program (`--log-level`,
`--log-format`, see `mesh_common.options.add_logging_options`). Text lines read
`2026-12-01 23:40:00,123 WARNING aggregator.status: service admin-api: active -> inactive (...)`;
JSON lines are one object per line with `time` (ISO 8601 UTC), `level`, `logger` and
`message`, then every field the call passed with `extra=` (e.g. `service`, `from`, `to`,
`reason` of a status change) as keys of their own, and `exception` when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Literal, TextIO

from mesh_common.wire_time import iso_utc

LogFormat = Literal["text", "json"]
"""How a program writes its log lines."""

LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The text line: time, level, logger, message."""

CHATTY_LOGGERS = ("httpx", "httpcore")
"""Libraries that log every request at INFO: kept to warnings unless the level is DEBUG."""

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
"""LogRecord attributes that are not `extra=` fields (uvicorn's `color_message` is the
message again, with terminal colour codes)."""


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a logging call passed with `extra=`, by name."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (values JSON cannot hold are written as text)."""
        item: dict[str, Any] = {
            "time": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            item.setdefault(key, value)
        if record.exc_info:
            item["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            item["exception"] = record.exc_text
        if record.stack_info:
            item["stack"] = self.formatStack(record.stack_info)
        return json.dumps(item, default=str, ensure_ascii=False)


def formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of `log_format`; ValueError for another name."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {log_format!r}; use one of {', '.join(LOG_FORMATS)}")


class _MeshHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs (so a second call replaces it, and only it)."""


def configure(
    level: str = "INFO", log_format: LogFormat = "text", stream: TextIO | None = None
) -> None:
    """Send every log record at `level` or above to stderr (or `stream`), as `log_format`.

    A second call replaces the handler of the first rather than doubling every line; other
    handlers on the root logger (a test's capture) stay. Libraries' loggers that propagate
    (uvicorn's, when it is given no logging config of its own) end up in the same handler;
    the request lines of CHATTY_LOGGERS only at DEBUG.

    gRPC's core writes its own lines to stderr, past Python's logging; it reads their
    level when grpc is imported, long before this runs: `mesh_common.grpc_verbosity`,
    imported first by the programs' packages, keeps them to errors.
    """
    handler = _MeshHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in [item for item in root.handlers if isinstance(item, _MeshHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level.upper() == "DEBUG" else "WARNING")
