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
from aggregator._history.codec import Columns, KindColumns, between, decode_chunk, joined
from aggregator._history.decoded import DecodedChunks
from aggregator._history.memory import MemoryView, OpenChunks
from aggregator._history.model import Sample, SeriesKey, SeriesRecord, StoreSize, Tier
from aggregator._history.pushed import PushedCatalog, PushedPoint, PushedRecord
from aggregator._history.samples import rollup_columns
from aggregator._history.tiers import aligned_below


class HistoryReader:
    """Reads the history the writer keeps (`HistoryWriter.reader`)."""

    def __init__(self, memory: OpenChunks, pushed: PushedCatalog | None = None) -> None:
        self._memory = memory
        self._decoded = DecodedChunks()
        self._pushed = pushed or PushedCatalog()

    def pushed_names(self) -> frozenset[str]:
        """The metric names of the pushed series the history holds (`pushed.py`)."""
        return self._pushed.names()

    def pushed_series(self, names: Collection[str]) -> list[PushedRecord]:
        """The pushed series of metrics `names`, by name then labels."""
        return self._pushed.records(names)

    def pushed_points(
        self, series: Collection[int], tier: Tier, start_ms: int, end_ms: int
    ) -> list[PushedPoint]:
        """The points of pushed `series` in `tier` read in `(start_ms, end_ms]`.

        By series then time; HistoryStoreError when the store cannot be read.
        """
        store = self._memory.view((), 0).store
        if store is None:
            raise HistoryStoreError("the history store is not open (see the degraded reason)")
        if not series or end_ms <= start_ms:
            return []
        return store.pushed_points(series, tier.key, start_ms, end_ms)

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

    def final_ms(self, tier: Tier) -> tuple[int, int]:
        """(a generation, a time): `tier`'s samples up to the time never change.

        Unless the generation changes: it does when the store is read back anew.
        """
        return self._memory.final_ms(tier)

    def held_from_ms(self, tier: Tier) -> int:
        """From when `tier` holds every sample (NEVER: always).

        Only an hourly summary added to a store that already had a history holds less: from
        its first seal on (`tiers.py`).
        """
        return self._memory.held_from_ms(tier)

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
        found = self.read_columns(keys, tier, start_ms, end_ms)
        return {
            key: [sample for part in parts for sample in part.samples()]
            for key, parts in found.items()
        }

    def read_columns(
        self,
        keys: Collection[SeriesKey],
        tier: Tier,
        start_ms: int,
        end_ms: int,
        *,
        buckets: bool = True,
    ) -> dict[SeriesKey, list[Columns]]:
        """`read`'s samples as columns: per key, non-empty parts in time order.

        No sample object is built (a query evaluates the columns: query.evaluate_columns);
        without `buckets`, kind samples come without their buckets (`codec.decode_chunk`).
        """
        index = self.tiers.index(tier)
        by_key = {record.key: record for record in self._memory.series()}
        ids = {by_key[key].id: key for key in keys if key in by_key}
        if not ids or end_ms <= start_ms:
            return {}
        view = self._memory.view(ids, index)
        parts = self._parts(view, index, ids, start_ms, end_ms, buckets)
        return {ids[series]: found for series, found in parts.items() if found}

    def _parts(
        self,
        view: MemoryView,
        index: int,
        ids: Collection[int],
        start_ms: int,
        end_ms: int,
        buckets: bool,
    ) -> dict[int, list[Columns]]:
        """Per series id: stored, then open, then rolled-up samples in `(start_ms, end_ms]`."""
        tier_view = view.tiers[index]
        tier = tier_view.tier
        found: dict[int, list[Columns]] = defaultdict(list)
        sealed_ms = tier_view.sealed_ms
        if start_ms < sealed_ms:
            self._stored(view, tier, ids, start_ms, min(end_ms, sealed_ms), found, buckets)
        upper = end_ms if index == 0 else min(end_ms, tier_view.complete_ms)
        lower = max(start_ms, sealed_ms)
        if upper > lower:
            for series, columns in tier_view.open.items():
                part = between(columns, lower, upper)
                if not buckets and isinstance(part, KindColumns):
                    part = part.without_buckets()  # nothing to merge when rolled up
                if len(part):
                    found[series].append(part)
        if index > 0 and end_ms > tier_view.complete_ms:
            resolution = tier.resolution_ms
            lower = aligned_below(max(start_ms, tier_view.complete_ms), resolution)
            upper = aligned_below(end_ms, resolution)
            finer = self._parts(view, index - 1, ids, lower, upper, buckets)
            for series, parts in finer.items():
                rolled = rollup_columns(joined(parts), resolution)
                if len(rolled):
                    found[series].append(rolled)
        return found

    def _stored(
        self,
        view: MemoryView,
        tier: Tier,
        ids: Collection[int],
        start_ms: int,
        end_ms: int,
        found: dict[int, list[Columns]],
        buckets: bool,
    ) -> None:
        """Add the stored samples of `ids` in `(start_ms, end_ms]` to `found`."""
        store = view.store
        if store is None:
            raise HistoryStoreError("the history store is not open (see the degraded reason)")
        decoded = self._decoded
        for chunk in store.chunks(tier.key, ids, start_ms, end_ms):
            key = (view.generation, chunk.tier, chunk.series, chunk.start_ms, chunk.samples)
            columns = decoded.get(key, buckets)
            if columns is None:
                columns = decode_chunk(chunk.data, buckets)
                decoded.put(key, buckets, columns)
            if columns.times[0] <= start_ms or columns.times[-1] > end_ms:
                columns = between(columns, start_ms, end_ms)
            if len(columns):
                found[chunk.series].append(columns)
