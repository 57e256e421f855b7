"""Restart: the writer's state rebuilt from a store (cursors + head, open chunks, progress).

The cursors are the stored ones (as of their seal), advanced by the kind samples of every head
row written after them, in time order: a sample knows whether it was a reset and the lifetime it
belongs to (`samples.advance_cursor`), so the cursors come out exactly as the writer had them.
The finest tier's open samples are the head rows; a coarser tier's are its stored samples after
its last final chunk, up to its roll-up progress (`complete_ms`, kept in `history_meta` by the
seal that wrote them). Nothing is rolled up again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aggregator._history.codec import (
    Columns,
    between,
    columns_of,
    decode_chunk,
    decode_cursor,
    decode_head,
)
from aggregator._history.memory import NEVER
from aggregator._history.model import (
    Cursor,
    Increase,
    Sample,
    SeriesKey,
    SeriesRecord,
    ServiceSample,
    Tier,
)
from aggregator._history.samples import advance_cursor
from aggregator._history.store import META_SEALED, META_TIERS, HistoryStore, meta_complete
from aggregator._history.tiers import aligned_below


@dataclass(frozen=True, slots=True)
class Recovered:
    """The writer's state as a store holds it."""

    records: list[SeriesRecord]
    cursors: dict[SeriesKey, Cursor]
    open: list[dict[int, Columns]]
    sealed_ms: list[int]
    complete_ms: list[int]
    last_ms: int
    """The time of the newest round stored (NEVER for an empty store)."""
    tiers_text: str
    """The tiers the store was last sealed with ("" if never)."""


def recover(store: HistoryStore, tiers: Sequence[Tier]) -> Recovered:
    """Read `store` into the writer's state; HistoryStoreError when it cannot be read."""
    records = store.series()
    keys = {record.id: record.key for record in records}
    meta = store.meta()
    sealed = [int(meta.get(META_SEALED, NEVER))]
    complete = [NEVER]
    for tier in tiers[1:]:
        progress = int(meta.get(meta_complete(tier), NEVER))
        complete.append(progress)
        sealed.append(aligned_below(progress, tier.chunk_ms) if progress > NEVER else NEVER)
    cursors, times = {}, {}
    for series, record in store.cursors().items():
        cursors[keys[series]] = decode_cursor(record.data)
        times[series] = record.time_ms
    finest: dict[int, list[Sample]] = {}
    last_ms = sealed[0]
    for time_ms, data in store.head():
        kinds, services = decode_head(time_ms, data)
        for series, sample, reset, lifetime in kinds:
            finest.setdefault(series, []).append(sample)
            if time_ms > times.get(series, NEVER):
                key = keys[series]
                increase = Increase(key, sample, reset, lifetime)
                cursors[key] = advance_cursor(cursors.get(key), increase)
        for series, service in services:
            finest.setdefault(series, []).append(service)
        last_ms = max(last_ms, time_ms)
    opened = [{series: _columns(samples) for series, samples in finest.items()}]
    for index, tier in enumerate(tiers[1:], start=1):
        opened.append(_coarse_open(store, tier, list(keys), sealed[index], complete[index]))
    return Recovered(records, cursors, opened, sealed, complete, last_ms, meta.get(META_TIERS, ""))


def _columns(samples: list[Sample]) -> Columns:
    return columns_of(samples, isinstance(samples[0], ServiceSample))  # type: ignore[arg-type]


def _coarse_open(
    store: HistoryStore, tier: Tier, series: list[int], sealed_ms: int, complete_ms: int
) -> dict[int, Columns]:
    """A coarse tier's stored samples in `(sealed_ms, complete_ms]`, by series."""
    if complete_ms <= sealed_ms or not series:
        return {}
    found: dict[int, list[Sample]] = {}
    for chunk in store.chunks(tier.key, series, sealed_ms, complete_ms):
        part = between(decode_chunk(chunk.data), sealed_ms, complete_ms).samples()
        found.setdefault(chunk.series, []).extend(part)
    return {each: _columns(samples) for each, samples in found.items() if samples}
