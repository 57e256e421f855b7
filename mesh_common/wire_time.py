"""Seconds to and from protobuf `Duration` and `Timestamp`, and ISO 8601 for people.

Every conversion between a float of seconds and a wire time goes through here, so rounding is
the same everywhere: to the nanosecond, half to even (`round`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp


def to_seconds(value: Duration | Timestamp) -> float:
    """A Duration's length, or a Timestamp's epoch seconds, as a float."""
    return value.seconds + value.nanos / 1e9


def set_seconds(target: Duration | Timestamp, seconds: float) -> None:
    """Set a Duration (a span) or a Timestamp (epoch seconds) in place, e.g. a message field.

    Writes the two fields directly (protobuf's FromNanoseconds is several times slower, and
    answers set dozens of them): nanos in 0..999,999,999, except for a negative Duration,
    whose nanos take the sign of its seconds as the Duration type requires.
    """
    whole, nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    if whole < 0 and nanos and isinstance(target, Duration):
        whole, nanos = whole + 1, nanos - 1_000_000_000
    target.seconds = whole
    target.nanos = nanos


def duration(seconds: float) -> Duration:
    """A new Duration of `seconds`."""
    value = Duration()
    set_seconds(value, seconds)
    return value


def timestamp(epoch_seconds: float) -> Timestamp:
    """A new Timestamp at `epoch_seconds`."""
    value = Timestamp()
    set_seconds(value, epoch_seconds)
    return value


def iso_utc(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds and a `Z`, e.g. `2025-01-17T10:30:00.123Z`."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
