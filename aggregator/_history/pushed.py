"""Pushed series in the history: their records, their points per tier, and the catalog of them.

A series pushed to the mesh (seed 003's `cpu_usage_percent{host="server01"}`, an OTLP gauge or
sum) is kept apart from the mesh's own (service, kind) series, in two tables of the same store:

    pushed_series (id, name, labels, type, help, unit)     one row per label set of a metric
    pushed_points (series, tier, bucket_ms, time_ms, value) the last value of each tier bucket

`labels` is the label set as canonical JSON (keys sorted, no spaces), so a label set has one
text. A point is the **last value read in a tier's bucket** `(T - resolution, T]` (`bucket_ms`
is `T`, `time_ms` when the value was read): each round, every series that took a value since
the previous round is upserted once per tier (`INSERT ... ON CONFLICT DO UPDATE`), so a tier
holds at most one point per series and resolution, and retention deletes a tier's points by
bucket as it deletes chunks. A value is as pushed (a counter's raw value; NaN kept as NULL).

Reads follow Prometheus's staleness rule: the value at `t` is the last point read at or before
`t` and no more than `LOOKBACK_MS` before it (`pushed_query.py`). The catalog is the writer's
record of every stored series (read back when the store opens), shared with the query threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from aggregator._history.model import Tier
from aggregator._history.tiers import bucket_end
from aggregator._ingest.model import PUSHED_LOOKBACK_SECONDS, Labels, PushedSeries

LOOKBACK_MS = int(PUSHED_LOOKBACK_SECONDS * 1000)
"""How far back a step looks for a pushed series' last value (Prometheus's 5 minutes)."""


class PushedRecord(NamedTuple):
    """A pushed series as the store keeps it: its id, metric name, labels, type, help, unit."""

    id: int
    name: str
    labels: str
    """The label set as canonical JSON (`labels_text`)."""
    type: str
    help: str
    unit: str

    def label_set(self) -> dict[str, str]:
        """The labels as a mapping."""
        found: dict[str, str] = json.loads(self.labels)
        return found


class PushedPoint(NamedTuple):
    """The last value of one series in one tier bucket `(bucket_ms - resolution, bucket_ms]`."""

    series: int
    tier: int
    bucket_ms: int
    time_ms: int
    value: float | None
    """None for NaN (SQLite stores NaN as NULL): read back as NaN."""


UPSERT_SERIES = (
    "INSERT INTO pushed_series (id, name, labels, type, help, unit) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET type = excluded.type, help = excluded.help, "
    "unit = excluded.unit"
)
"""The SQL of a series' record (both backends; PostgreSQL's placeholders are `%s`)."""
UPSERT_POINT = (
    "INSERT INTO pushed_points (series, tier, bucket_ms, time_ms, value) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (series, tier, bucket_ms) DO UPDATE SET time_ms = excluded.time_ms, "
    "value = excluded.value WHERE excluded.time_ms >= pushed_points.time_ms"
)
"""The SQL of a point: the bucket's value is the last one read in it."""
SELECT_SERIES = "SELECT id, name, labels, type, help, unit FROM pushed_series ORDER BY id"
SELECT_POINTS = (
    "SELECT series, tier, bucket_ms, time_ms, value FROM pushed_points "
    "WHERE series = ? AND tier = ? AND bucket_ms > ? AND bucket_ms < ? "
    "AND time_ms > ? AND time_ms <= ? ORDER BY bucket_ms"
)
"""One series' points of a tier read in `(start, end]` (their buckets end in `(start, end +
resolution)`, which the primary key's index reaches)."""
DELETE_POINTS = (
    "DELETE FROM pushed_points WHERE (series, tier, bucket_ms) IN (SELECT series, tier, bucket_ms "
    "FROM pushed_points WHERE tier = ? AND bucket_ms < ? LIMIT ?)"
)
"""Retention: a batch of a tier's points whose bucket ended before a time."""


def select_points_args(series: int, tier: int, start_ms: int, end_ms: int) -> tuple[int, ...]:
    """The parameters of SELECT_POINTS (a tier's key is its resolution)."""
    return (series, tier, start_ms, end_ms + tier, start_ms, end_ms)


def labels_text(labels: Labels) -> str:
    """The canonical JSON of a label set (keys sorted, no spaces)."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def points_of(series: int, value: float, time_ms: int, tiers: Sequence[Tier]) -> list[PushedPoint]:
    """One point per tier for a value read at `time_ms` (its bucket in each tier)."""
    stored = None if value != value else value  # NaN
    return [
        PushedPoint(series, tier.key, bucket_end(time_ms, tier.resolution_ms), time_ms, stored)
        for tier in tiers
    ]


class PushedCatalog:
    """Every pushed series the store holds (or the writer will write), by name and labels.

    The writer's worker thread adds to it; query threads read it (a lock guards both).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, dict[str, PushedRecord]] = {}
        self._next_id = 1

    def reset(self, records: Iterable[PushedRecord]) -> None:
        """Know exactly `records` (a store read back)."""
        by_name: dict[str, dict[str, PushedRecord]] = {}
        top = 0
        for record in records:
            by_name.setdefault(record.name, {})[record.labels] = record
            top = max(top, record.id)
        with self._lock:
            self._by_name = by_name
            self._next_id = top + 1

    def names(self) -> frozenset[str]:
        """The metric names of every series known."""
        with self._lock:
            return frozenset(self._by_name)

    def records(self, names: Iterable[str]) -> list[PushedRecord]:
        """The series of metrics `names`, by name then labels."""
        with self._lock:
            found = [self._by_name.get(name, {}) for name in sorted(set(names))]
            return [each[key] for each in found for key in sorted(each)]

    def update(self, series: Sequence[PushedSeries]) -> tuple[list[int], list[PushedRecord]]:
        """Each series' id, and the records that are new or changed (type, help or unit).

        Writer thread only: ids are given here.
        """
        ids: list[int] = []
        changed: list[PushedRecord] = []
        with self._lock:
            for each in series:
                text = labels_text(each.labels)
                known = self._by_name.setdefault(each.name, {})
                record = known.get(text)
                fresh = (each.type.value, each.help or "", each.unit or "")
                if record is None:
                    record = PushedRecord(self._next_id, each.name, text, *fresh)
                    self._next_id += 1
                elif (record.type, record.help, record.unit) == fresh:
                    ids.append(record.id)
                    continue
                else:
                    record = record._replace(type=fresh[0], help=fresh[1], unit=fresh[2])
                known[text] = record
                changed.append(record)
                ids.append(record.id)
        return ids, changed
