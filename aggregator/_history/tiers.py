"""Tiers as Graphite writes them (`resolution:retention`), sample times, and the tier of a query.

`parse_tiers(["1s:24h", "1m:30d", "5m:90d"])` follows carbon's `storage-schemas.conf` syntax: a
resolution is seconds or a number with a unit, a retention a number with a unit or a count of
points; a unit is any prefix of seconds, minutes, hours, days, weeks, years (`m` is minutes).
The rules are whisper's: resolutions increase, each divides the next, each tier keeps more time
than the one before and at least one sample of the next.

**Sample times.** The finest tier has one sample per round, at the round's time (the interval
since the previous round ends there). A coarser tier's sample at an aligned time `T` (a multiple
of its resolution since the epoch) is the sum of the finer tier's samples whose time falls in
`(T - resolution, T]`: every sample's time is the end of what it covers, in every tier, so a
window `(t - step, t]` takes the samples whose time falls in it whatever the tier, and a coarse
tier's answer equals the fine tier's whenever the window's edges are multiples of the coarse
resolution (otherwise they snap to them).

**The hourly summary.** `parse_tiers(..., summary=True)` (what the store uses) adds one tier
after the configured ones: a 1 h resolution kept as long as the last tier, rolled up from it
like every other tier (counts add, buckets merge), so a long range at a step of whole hours
reads 12 times fewer samples than from 5 min ones, with the same answer. It is added when the
last tier's resolution divides an hour and is finer than one; it is reported with the others
(`summary` set). A store written before it had one fills it from its first seal on: the reader
says from when it holds (`HistoryReader.held_from_ms`), and a range it does not hold reads the
tier before it.

**Chunks** cover aligned spans `(S, S + chunk_ms]`: `TARGET_SAMPLES` of the finest tier's
resolution (two minutes of 1 s rounds), `COARSE_SAMPLES` of a coarser one, rounded up to a whole
number of the next tier's resolution, so that sealing a span completes whole samples of the next.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from itertools import pairwise

from aggregator._errors import HistoryQueryError
from aggregator._history.model import Tier
from mesh_common.errors import ConfigError

DEFAULT_TIERS = ("1s:24h", "1m:30d", "5m:90d")
"""The round resolution for a day, a minute for 30 days, then seed 004's 300 s for 90 days."""
TARGET_SAMPLES = 120
"""Samples per chunk of the finest tier (Prometheus's 120): two minutes of 1 s rounds."""
COARSE_SAMPLES = 60
"""Samples per chunk of a coarser tier: an hour of 1 min samples, 5 h of 5 min ones."""
MAX_TIERS = 6
"""More tiers than this is a mistake in the list."""
SUMMARY_MS = 3_600_000
"""The hourly summary's resolution (module doc): 90 days at a 1 h step read 2,160 samples per
series instead of 25,920 (bench/bench_history_query.py, `90 d at 1 h`)."""

_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
_UNITS["years"] = 365 * 86400
_PART = re.compile(r"(\d+)([a-z]*)")


def _seconds(text: str, what: str, entry: str, resolution: int | None) -> int:
    """Seconds of `text`: a number with a unit, or bare (seconds, or points times resolution)."""
    match = _PART.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f"tiers: {entry!r}: the {what} {text!r} is not a positive duration")
    number, unit = int(match.group(1)), match.group(2)
    if not unit:
        return number if resolution is None else number * resolution
    word = next((name for name in _UNITS if name.startswith(unit)), None)
    if word is None:
        raise ConfigError(
            f"tiers: {entry!r}: unknown unit {unit!r}; use s, m (minutes), h, d, w or y"
        )
    return number * _UNITS[word]


def parse_tier(entry: str) -> tuple[int, int]:
    """(resolution, retention) in seconds of one `resolution:retention` entry; ConfigError."""
    resolution_text, colon, retention_text = entry.partition(":")
    if not colon:
        raise ConfigError(f"tiers: {entry!r} is not resolution:retention (e.g. '1m:30d')")
    resolution = _seconds(resolution_text, "resolution", entry, None)
    return resolution, _seconds(retention_text, "retention", entry, resolution)


def parse_tiers(entries: Sequence[str], *, summary: bool = False) -> tuple[Tier, ...]:
    """The tiers of a Graphite list, finest first; ConfigError naming the entry at fault.

    With `summary`, the hourly summary follows them where it applies (module doc).
    """
    if not entries:
        raise ConfigError("tiers: at least one tier is needed (e.g. ['1s:24h'])")
    if len(entries) > MAX_TIERS:
        raise ConfigError(f"tiers: {len(entries)} tiers; at most {MAX_TIERS}")
    parsed = [(entry, *parse_tier(entry)) for entry in entries]
    for (entry, resolution, retention), (after, next_resolution, next_retention) in pairwise(
        parsed
    ):
        if next_resolution <= resolution or next_resolution % resolution:
            raise ConfigError(
                f"tiers: {after!r} follows {entry!r}: each resolution must be a whole multiple "
                "of the one before (finest first)"
            )
        if next_retention <= retention:
            raise ConfigError(
                f"tiers: {after!r} follows {entry!r}: each tier must keep more time than the "
                "one before"
            )
        if retention < next_resolution:
            raise ConfigError(
                f"tiers: {entry!r} keeps less than one sample of {after!r} (whisper's rule)"
            )
    _, last_resolution, last_retention = parsed[-1]
    hour = SUMMARY_MS // 1000
    summarized = summary and last_resolution < hour and hour % last_resolution == 0
    if summarized:
        parsed.append((f"1h:{_duration_text(last_retention)}", hour, last_retention))
    tiers = []
    for index, (entry, resolution, retention) in enumerate(parsed):
        samples = TARGET_SAMPLES if index == 0 else COARSE_SAMPLES
        span = samples * resolution
        if index + 1 < len(parsed):
            following = parsed[index + 1][1]
            span = math.ceil(span / following) * following
        is_summary = summarized and index == len(parsed) - 1
        tiers.append(
            Tier(resolution * 1000, retention * 1000, span * 1000, entry.strip(), is_summary)
        )
    return tuple(tiers)


def _duration_text(seconds: int) -> str:
    """`seconds` in the largest unit that writes it whole (`90d`, `36h`, `1w`)."""
    for unit, size in (("y", _UNITS["years"]), ("w", 604800), ("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def bucket_end(time_ms: int, resolution_ms: int) -> int:
    """The end of the aligned interval `(T - resolution, T]` that holds `time_ms`."""
    return -(-time_ms // resolution_ms) * resolution_ms


def aligned_below(time_ms: int, resolution_ms: int) -> int:
    """The largest multiple of `resolution_ms` at or below `time_ms`."""
    return time_ms // resolution_ms * resolution_ms


def choose_tier(tiers: Sequence[Tier], start_ms: int, now_ms: int, step_ms: int) -> Tier:
    """The tier that answers a range query from `start_ms` (at `now_ms`) with `step_ms` steps.

    Among the tiers whose retention reaches back to `start_ms`, the coarsest whose resolution
    divides the step: every tier holds exact sums, so it gives the same figures as a finer one
    (windows snapped to its resolution) from fewer samples. When the range starts before every
    retention, the longest-kept tiers. Raises HistoryQueryError (field `step`) naming the finest
    such tier and its resolution when no candidate's resolution divides the step.
    """
    if step_ms <= 0:
        raise HistoryQueryError(f"step {step_ms} ms: must be positive", field="step")
    reaching = [tier for tier in tiers if now_ms - tier.retention_ms <= start_ms]
    longest = max(tier.retention_ms for tier in tiers)
    candidates = reaching or [tier for tier in tiers if tier.retention_ms == longest]
    dividing = [tier for tier in candidates if step_ms % tier.resolution_ms == 0]
    if not dividing:
        finest = candidates[0]
        raise HistoryQueryError(
            f"step {step_ms / 1000:g}s is not a whole multiple of {finest.resolution_ms / 1000:g}s,"
            f" the resolution of tier {finest.text} that holds this range",
            field="step",
        )
    return dividing[-1]
