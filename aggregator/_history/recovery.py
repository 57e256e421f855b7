"""Restart: the writer's state rebuilt from a store (cursors + head, open chunks, progress).

The cursors are the stored ones (as of their seal), advanced by the kind samples of every head
row written after them, in time order: a sample knows whether it was a reset and the lifetime it
belongs to (`samples.advance_cursor`), so the cursors come out exactly as the writer had them.
The finest tier's open samples are the head rows. A coarser tier's are its stored samples after
its last final chunk, up to its last checkpoint (`checkpoint_ms` in `history_meta`), then
rolled up again from the finer tier up to its progress (`complete_ms`): exactly what a reader
reads of it, so `HistoryReader` does that part (at most `sealing.CHECKPOINT_MS` of it).
A head row that cannot be decoded is skipped with a warning (that round is lost, its events
are counted by the next one); anything else that cannot be read fails the recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aggregator._errors import HistoryStoreError
from aggregator._history.codec import (
    Columns,
    between,
    columns_of,
    decode_chunk,
    decode_cursor,
    decode_head,
)
from aggregator._history.memory import NEVER, OpenChunks
from aggregator._history.model import (
    Cursor,
    Sample,
    SeriesKey,
    SeriesRecord,
    ServiceSample,
    Tier,
)
from aggregator._history.reader import HistoryReader
from aggregator._history.samples import advance_cursor
from aggregator._history.store import (
    META_SEALED,
    META_SUMMARY_SINCE,
    META_TIERS,
    HistoryStore,
    meta_checkpoint,
    meta_complete,
)
from aggregator._history.tiers import aligned_below

_LOG = logging.getLogger("aggregator.history")


@dataclass(frozen=True, slots=True)
class Recovered:
    """The writer's state as a store holds it."""

    records: list[SeriesRecord]
    cursors: dict[SeriesKey, Cursor]
    open: list[dict[int, Columns]]
    sealed_ms: list[int]
    complete_ms: list[int]
    checkpoint_ms: list[int]
    last_ms: int
    """The time of the newest round stored (NEVER for an empty store)."""
    tiers_text: str
    """The tiers the store was last sealed with ("" if never)."""
    summary_since_ms: int = NEVER
    """From when the hourly summary holds every hour (`tiers.py`; NEVER: always)."""


def recover(store: HistoryStore, tiers: Sequence[Tier]) -> Recovered:
    """Read `store` into the writer's state; HistoryStoreError when it cannot be read."""
    records = store.series()
    keys = {record.id: record.key for record in records}
    meta = store.meta()
    sealed, complete, checkpoint = [int(meta.get(META_SEALED, NEVER))], [NEVER], [NEVER]
    for tier in tiers[1:]:
        progress = int(meta.get(meta_complete(tier), NEVER))
        complete.append(progress)
        checkpoint.append(int(meta.get(meta_checkpoint(tier), progress)))
        sealed.append(aligned_below(progress, tier.chunk_ms) if progress > NEVER else NEVER)
    cursors, finest, last_ms = _replay(store, keys, sealed[0])
    opened = [{series: _columns(samples) for series, samples in finest.items()}]
    for index, tier in enumerate(tiers[1:], start=1):
        opened.append(_coarse_open(store, tier, list(keys), sealed[index], checkpoint[index]))
    memory = OpenChunks(tiers)
    memory.reset(records, store)
    memory.replace(opened, sealed, checkpoint)
    reader = HistoryReader(memory)
    for index, tier in enumerate(tiers[1:], start=1):
        if complete[index] > checkpoint[index]:
            found = reader.read(list(keys.values()), tier, sealed[index], complete[index])
            ids = {key: series for series, key in keys.items()}
            opened[index] = {ids[key]: _columns(samples) for key, samples in found.items()}
            memory.replace(opened, sealed, [*complete[: index + 1], *checkpoint[index + 1 :]])
    return Recovered(
        records,
        cursors,
        opened,
        sealed,
        complete,
        checkpoint,
        last_ms,
        meta.get(META_TIERS, ""),
        _summary_since(meta, tiers, sealed),
    )


def _summary_since(meta: dict[str, str], tiers: Sequence[Tier], sealed: list[int]) -> int:
    """From when the hourly summary holds every hour.

    A store sealed before it had a summary fills it from the samples the finer tier keeps
    open, those after its `sealed_ms` (a whole number of hours: `tiers.parse_tiers`).
    """
    if META_SUMMARY_SINCE in meta:
        return int(meta[META_SUMMARY_SINCE])
    if not tiers[-1].summary or META_SEALED not in meta or meta_complete(tiers[-1]) in meta:
        return NEVER
    return sealed[-2]


def _replay(
    store: HistoryStore, keys: dict[int, SeriesKey], sealed_ms: int
) -> tuple[dict[SeriesKey, Cursor], dict[int, list[Sample]], int]:
    """The cursors advanced by the head rows; the head's samples by series; the newest time."""
    cursors, times = {}, {}
    for series, record in store.cursors().items():
        cursors[keys[series]] = decode_cursor(record.data)
        times[series] = record.time_ms
    finest: dict[int, list[Sample]] = {}
    last_ms = sealed_ms
    for time_ms, data in store.head():
        try:
            kinds, services = decode_head(time_ms, data)
        except HistoryStoreError as error:  # one damaged round, not the whole history
            _LOG.warning(
                "history: the round at %d ms cannot be read back, skipped: %s", time_ms, error
            )
            continue
        lifetimes = {}
        for series, service, lifetime in services:
            finest.setdefault(series, []).append(service)
            lifetimes[keys[series].service] = lifetime
        for series, sample, reset in kinds:
            finest.setdefault(series, []).append(sample)
            if time_ms > times.get(series, NEVER):
                key = keys[series]
                lifetime = lifetimes.get(key.service, 0)
                cursors[key] = advance_cursor(cursors.get(key), sample, reset, lifetime)
        last_ms = max(last_ms, time_ms)
    return cursors, finest, last_ms


def _columns(samples: list[Sample]) -> Columns:
    return columns_of(samples, isinstance(samples[0], ServiceSample))  # type: ignore[arg-type]


def _coarse_open(
    store: HistoryStore, tier: Tier, series: list[int], sealed_ms: int, upto_ms: int
) -> dict[int, Columns]:
    """A coarse tier's stored samples in `(sealed_ms, upto_ms]`, by series."""
    if upto_ms <= sealed_ms or not series:
        return {}
    found: dict[int, list[Sample]] = {}
    for chunk in store.chunks(tier.key, series, sealed_ms, upto_ms):
        part = between(decode_chunk(chunk.data), sealed_ms, upto_ms).samples()
        found.setdefault(chunk.series, []).extend(part)
    return {each: _columns(samples) for each, samples in found.items() if samples}
