"""The history store's interface (one ABC) and what every backend shares.

A backend keeps five things (tables `history_*` in both backends):

    history_series  (id, service, kind, type)              one row per series; ids from the writer
    history_chunks  (tier, series, start_ms, end_ms, samples, data)   sealed samples (codec.py)
    history_head    (time_ms, data)                        one row per round not sealed yet
    history_cursors (series, data, time_ms)                each kind's cursor as of the last seal
    history_meta    (key, value)                           schema version, tiers, seal progress

and the pushed series (`pushed.py`): `pushed_series` and `pushed_points`, the last value of
each series per tier bucket.

Every method blocks: it is called from the writer's worker thread, or from a query thread
(`series`, `chunks`, `size`), never from the event loop. Reads may run while the worker writes.
A backend raises `HistoryStoreError` naming the database and the problem. Nothing outside
`aggregator/_history/` knows SQL; a third backend is one module implementing `HistoryStore`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

from aggregator._history.model import ChunkRecord, CursorRecord, SeriesRecord, StoreSize, Tier
from aggregator._history.pushed import PushedPoint, PushedRecord
from aggregator._history.settings import HistorySettings

SCHEMA_VERSION = "2"
"""`history_meta` key `schema`: the tables' layout (codec.VERSION is the blobs').

2 added the pushed series' tables; a store of schema 1 gets them when it opens (`MIGRATIONS`)."""
MIGRATIONS = {"1": "2"}
"""A schema a backend upgrades when it opens it -> the schema after: the missing tables added."""
META_SCHEMA = "schema"
META_TIERS = "tiers"
"""The tiers the store was last written with (comma-separated, as configured)."""
META_SEALED = "sealed_ms"
"""The finest tier is sealed up to here: its samples up to it are chunks, later ones head."""


META_SUMMARY_SINCE = "summary_since_ms"
"""From when the hourly summary holds every hour, in a store that had a history before it."""


def meta_complete(tier: Tier) -> str:
    """The meta key of a coarse tier's progress: how far it is rolled up."""
    return f"complete_ms.{tier.key}"


def meta_checkpoint(tier: Tier) -> str:
    """The meta key of how far a coarse tier's stored chunks (partial ones included) reach."""
    return f"checkpoint_ms.{tier.key}"


class HistoryStore(abc.ABC):
    """One backend: where series, chunks, the head, cursors and meta live.

    `tiers` are those the writer uses; a backend reads the chunk span of a tier from them to
    bound its scans (`span_ms`).
    """

    name: str
    """The database, as messages name it (a file path, a URL without its password)."""

    def __init__(self, tiers: Sequence[Tier]) -> None:
        self._spans = {tier.key: tier.chunk_ms for tier in tiers}

    def span_ms(self, tier: int) -> int | None:
        """The chunk span of tier `tier` (every chunk lies within one), None for another tier."""
        return self._spans.get(tier)

    @abc.abstractmethod
    def series(self) -> list[SeriesRecord]:
        """Every series, by id."""

    @abc.abstractmethod
    def append_round(self, time_ms: int, data: bytes, series: Sequence[SeriesRecord] = ()) -> None:
        """One round in one transaction: its head row, and `series` that are new or changed type."""

    @abc.abstractmethod
    def seal(
        self,
        chunks: Sequence[ChunkRecord],
        cursors: Sequence[CursorRecord],
        head_upto_ms: int,
        meta: Mapping[str, str],
    ) -> None:
        """Store a seal in one transaction.

        Write `chunks` (replacing one of the same tier, series and start), replace `cursors`,
        delete the head rows up to `head_upto_ms`, set `meta`.
        """

    @abc.abstractmethod
    def head(self) -> list[tuple[int, bytes]]:
        """The head rows (time_ms, data), oldest first."""

    @abc.abstractmethod
    def cursors(self) -> dict[int, CursorRecord]:
        """Every stored cursor by series id."""

    @abc.abstractmethod
    def meta(self) -> dict[str, str]:
        """The meta table."""

    @abc.abstractmethod
    def chunks(
        self, tier: int, series: Collection[int], start_ms: int, end_ms: int
    ) -> Iterator[ChunkRecord]:
        """The chunks of `tier` and `series` that may hold samples in `(start_ms, end_ms]`.

        Oldest first per series.
        """

    @abc.abstractmethod
    def delete_before(self, tier: int, end_ms: int, limit: int) -> int:
        """Delete at most `limit` chunks of `tier` whose last sample is older than `end_ms`.

        Returns how many were deleted (retention: fewer than `limit` means done for now).
        """

    @abc.abstractmethod
    def pushed_series(self) -> list[PushedRecord]:
        """Every pushed series, by id."""

    @abc.abstractmethod
    def append_pushed(self, series: Sequence[PushedRecord], points: Sequence[PushedPoint]) -> None:
        """In one transaction: `series` new or changed (by id), then `points`.

        A point replaces the one of its series, tier and bucket unless that one was read later.
        """

    @abc.abstractmethod
    def pushed_points(
        self, series: Collection[int], tier: int, start_ms: int, end_ms: int
    ) -> list[PushedPoint]:
        """The points of `series` in `tier` read in `(start_ms, end_ms]`, by series then time."""

    @abc.abstractmethod
    def delete_pushed_before(self, tier: int, end_ms: int, limit: int) -> int:
        """Delete at most `limit` points of `tier` whose bucket ends before `end_ms`; how many."""

    @abc.abstractmethod
    def size(self) -> StoreSize:
        """Bytes and rows per tier, the head, and the whole database."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the database; a second call is harmless."""


StoreOpener = Callable[[], HistoryStore]
"""Opens the configured store (called on the writer's worker thread, again after a failure)."""


def store_opener(settings: HistorySettings, state_dir: str = "") -> StoreOpener:
    """The function that opens the store `settings` select: PostgreSQL for a `url`, else SQLite.

    `state_dir` is where the alert store is kept (`[alerts] state_dir`); the SQLite file goes
    beside it unless `path` says otherwise.
    """
    tiers = settings.tier_list
    if settings.url:
        url = settings.url

        def open_postgres() -> HistoryStore:
            from aggregator._history.postgres import PostgresStore

            return PostgresStore(url, tiers)

        return open_postgres
    path = settings.database_path(state_dir)

    def open_sqlite() -> HistoryStore:
        from aggregator._history.sqlite import SqliteStore

        return SqliteStore(path, tiers)

    return open_sqlite
