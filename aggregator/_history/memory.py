"""The samples not yet in final chunks: per tier and series, in memory, shared with readers.

The writer's worker thread is the only one that changes an `OpenChunks`, always under its lock;
readers copy what they need under the same lock (`view`) and decode outside it. Per tier:

- the finest tier holds its samples later than `sealed_ms` (the rounds of the head);
- a coarser tier holds its samples in `(sealed_ms, complete_ms]`: `complete_ms` is how far the
  tier has been rolled up, `sealed_ms` where its last final chunk ends (the samples between are
  also stored, as a partial chunk rewritten at each seal, so a restart finds them).

Everything at or before a tier's `sealed_ms` is in the store's chunks and nowhere in memory; a
coarse tier's samples after `complete_ms` are rolled up from the finer tier when read.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from aggregator._history.codec import Columns, KindColumns, ServiceColumns, ServiceRow
from aggregator._history.model import KindSample, SeriesRecord, Tier
from aggregator._history.store import HistoryStore

NEVER = -(2**62)
"""A time before every sample: nothing sealed or complete yet."""


@dataclass(frozen=True, slots=True)
class TierView:
    """A copy of one tier's open samples for some series, and its progress."""

    tier: Tier
    open: dict[int, Columns]
    sealed_ms: int
    complete_ms: int


@dataclass(frozen=True, slots=True)
class MemoryView:
    """What a reader needs from memory, copied at one instant: every tier's view and the store."""

    tiers: tuple[TierView, ...]
    store: HistoryStore | None
    generation: int = 0
    """`OpenChunks.generation` at the copy: the same store read the same way."""


class OpenChunks:
    """Open samples per tier and series, the tiers' progress, and the series (see module doc)."""

    def __init__(self, tiers: Sequence[Tier]) -> None:
        self.lock = threading.Lock()
        self.tiers = tuple(tiers)
        self.open: list[dict[int, Columns]] = [{} for _ in self.tiers]
        self.sealed_ms = [NEVER for _ in self.tiers]
        self.complete_ms = [NEVER for _ in self.tiers]
        self.records: dict[int, SeriesRecord] = {}
        self.store: HistoryStore | None = None
        """The store readers read (None while it cannot be opened)."""
        self.summary_since_ms = NEVER
        """From when the hourly summary holds every hour (`tiers.py`; NEVER: always)."""
        self.generation = 0
        """Counts `reset`s: a store read back anew may hold other samples than before."""

    def rounds_open(self) -> int:
        """How many rounds the finest tier holds (the service series have one sample each)."""
        return max((len(columns) for columns in self.open[0].values()), default=0)

    def append_round(
        self,
        time_ms: int,
        kind_ids: Sequence[int],
        kinds: Sequence[KindSample],
        service_ids: Sequence[int],
        services: Sequence[ServiceRow],
        records: Iterable[SeriesRecord],
    ) -> None:
        """Add one round's samples (parallel: series ids, samples) to the finest tier."""
        finest = self.open[0]
        with self.lock:
            for record in records:
                self.records[record.id] = record
            for series, kind in zip(kind_ids, kinds, strict=True):
                columns = finest.get(series)
                if columns is None:
                    columns = finest[series] = KindColumns()
                columns.append(kind)  # type: ignore[arg-type]
            for series, service in zip(service_ids, services, strict=True):
                columns = finest.get(series)
                if columns is None:
                    columns = finest[series] = ServiceColumns()
                columns.append_row(time_ms, service)  # type: ignore[union-attr]

    def view(self, series: Collection[int], tier: int) -> MemoryView:
        """Copies of tiers 0..`tier`'s open samples of `series`, with their progress."""
        with self.lock:
            views = tuple(
                TierView(
                    self.tiers[index],
                    {
                        each: columns.slice(0, len(columns))
                        for each in series
                        if (columns := self.open[index].get(each)) is not None
                    },
                    self.sealed_ms[index],
                    self.complete_ms[index],
                )
                for index in range(tier + 1)
            )
            return MemoryView(views, self.store, self.generation)

    def final_ms(self, tier: Tier) -> tuple[int, int]:
        """(`generation`, the tier's `sealed_ms`): its samples up to then never change."""
        with self.lock:
            return self.generation, self.sealed_ms[self.tiers.index(tier)]

    def held_from_ms(self, tier: Tier) -> int:
        """From when `tier` holds every sample (`HistoryReader.held_from_ms`)."""
        with self.lock:
            return self.summary_since_ms if tier.summary else NEVER

    def series(self) -> list[SeriesRecord]:
        """Every series known (stored or only in memory), by id."""
        with self.lock:
            return sorted(self.records.values())

    def replace(
        self,
        open_chunks: Sequence[dict[int, Columns]],
        sealed_ms: Sequence[int],
        complete_ms: Sequence[int],
    ) -> None:
        """Swap in every tier's open samples and progress (after a seal, or a recovery)."""
        with self.lock:
            self.open = list(open_chunks)
            self.sealed_ms = list(sealed_ms)
            self.complete_ms = list(complete_ms)

    def use_store(self, store: HistoryStore | None) -> None:
        """Have readers read `store` from now on (None: the store is closed)."""
        with self.lock:
            self.generation += 1
            self.store = store

    def reset(
        self,
        records: Iterable[SeriesRecord],
        store: HistoryStore | None,
        summary_since_ms: int = NEVER,
    ) -> None:
        """Forget every sample; know `records`; read from `store` from now on.

        `summary_since_ms`: from when the hourly summary holds every hour.
        """
        with self.lock:
            self.generation += 1
            self.summary_since_ms = summary_since_ms
            self.open = [{} for _ in self.tiers]
            self.sealed_ms = [NEVER for _ in self.tiers]
            self.complete_ms = [NEVER for _ in self.tiers]
            self.records = {record.id: record for record in records}
            self.store = store
