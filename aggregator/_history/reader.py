"""HistoryReader: a tier's samples of some series over a time range, from chunks and memory.

Thread-safe and blocking: call it from a worker thread (e.g. `asyncio.to_thread`), never from
the event loop. A read copies the writer's open samples of the asked series under the writer's
lock, then reads the store's chunks outside it, taking from the store only what is sealed at the
instant of the copy: a seal that lands meanwhile neither doubles nor hides a sample. A coarse
tier's samples newer than its roll-up (`complete_ms`) are rolled up from the finer tier as they
are read, with the same code sealing uses, so the newest minutes are never missing from it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from aggregator._errors import HistoryStoreError
from aggregator._history.codec import between, decode_chunk
from aggregator._history.memory import MemoryView, OpenChunks
from aggregator._history.model import Sample, SeriesKey, SeriesRecord, StoreSize, Tier
from aggregator._history.samples import rollup
from aggregator._history.tiers import aligned_below


class HistoryReader:
    """Reads the history the writer keeps (`HistoryWriter.reader`)."""

    def __init__(self, memory: OpenChunks) -> None:
        self._memory = memory

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """The tiers, finest first (for `tiers.choose_tier`)."""
        return self._memory.tiers

    def series(self) -> list[SeriesRecord]:
        """Every series the history knows, by id.

        A record's key is (`service`, `kind`), kind "" for the service's own series; its type
        is the registry type at its last write.
        """
        return self._memory.series()

    def size(self) -> StoreSize:
        """What the store takes: bytes and rows per tier, the head, the whole database.

        Blocking; HistoryStoreError when the store is not open.
        """
        store = self._memory.view((), 0).store
        if store is None:
            raise HistoryStoreError("the history store is not open (see the degraded reason)")
        return store.size()

    def read(
        self, keys: Collection[SeriesKey], tier: Tier, start_ms: int, end_ms: int
    ) -> dict[SeriesKey, list[Sample]]:
        """The samples of `keys` in `tier` whose time falls in `(start_ms, end_ms]`, oldest first.

        A key's samples are `KindSample`s for a kind series, `ServiceSample`s for a service's
        own series (kind ""); a key with no sample in the range (or unknown) is absent. A sample
        covers the interval that ends at its time (`tiers.py`), so the samples of the window of
        a range query's point `t` with step `s` are those read with `(t - s, t]`. Raises
        HistoryStoreError naming the database when the store cannot be read, and ValueError
        for a tier that is not one of `tiers`.
        """
        index = self.tiers.index(tier)
        by_key = {record.key: record for record in self._memory.series()}
        ids = {by_key[key].id: key for key in keys if key in by_key}
        if not ids or end_ms <= start_ms:
            return {}
        view = self._memory.view(ids, index)
        samples = self._samples(view, index, ids, start_ms, end_ms)
        return {ids[series]: found for series, found in samples.items() if found}

    def _samples(
        self, view: MemoryView, index: int, ids: Collection[int], start_ms: int, end_ms: int
    ) -> dict[int, list[Sample]]:
        """Per series id: stored, then open, then rolled-up samples in `(start_ms, end_ms]`."""
        tier_view = view.tiers[index]
        tier = tier_view.tier
        found: dict[int, list[Sample]] = defaultdict(list)
        sealed_ms = tier_view.sealed_ms
        if start_ms < sealed_ms:
            self._stored(view, tier, ids, start_ms, min(end_ms, sealed_ms), found)
        upper = end_ms if index == 0 else min(end_ms, tier_view.complete_ms)
        lower = max(start_ms, sealed_ms)
        if upper > lower:
            for series, columns in tier_view.open.items():
                found[series] += between(columns, lower, upper).samples()
        if index > 0 and end_ms > tier_view.complete_ms:
            resolution = tier.resolution_ms
            lower = aligned_below(max(start_ms, tier_view.complete_ms), resolution)
            finer = self._samples(view, index - 1, ids, lower, aligned_below(end_ms, resolution))
            for series, samples in finer.items():
                found[series] += rollup(samples, resolution)
        return found

    @staticmethod
    def _stored(
        view: MemoryView,
        tier: Tier,
        ids: Collection[int],
        start_ms: int,
        end_ms: int,
        found: dict[int, list[Sample]],
    ) -> None:
        """Add the stored samples of `ids` in `(start_ms, end_ms]` to `found`."""
        store = view.store
        if store is None:
            raise HistoryStoreError("the history store is not open (see the degraded reason)")
        for chunk in store.chunks(tier.key, ids, start_ms, end_ms):
            columns = between(decode_chunk(chunk.data), start_ms, end_ms)
            found[chunk.series] += columns.samples()
