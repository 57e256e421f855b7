"""The SQLite backend, the default: one file in the state directory.

WAL mode with `synchronous=NORMAL`: a committed transaction is in the WAL file when the commit
returns, so it survives `kill -9` of the process (a power cut may lose the last ones). Every
round is one transaction (`append_round`), every seal another. Two connections: the writer's
(opened with `check_same_thread=False`, used from the writer's one worker thread) and one for
reads from query threads, behind a lock; WAL lets reads run while the writer writes.

A write that fails (a read-only file, a full disk) leaves the writer's connection to be opened
again by the next write: SQLite keeps a connection it opened read-only read-only, so a file
made writable again is only written through a new one.

The file is locked (`flock`) while open, so a second aggregator pointed at the same file fails
to open it with a message saying so, instead of interleaving two histories.

Chunks live in a rowid table, not WITHOUT ROWID: a chunk's blob (1 to 3 KB) is larger than the
~1/20 of a page SQLite advises for WITHOUT ROWID rows, whose overflow would take a page per
chunk (bench/bench_history.py, `disk`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

from aggregator._errors import HistoryStoreError
from aggregator._history.model import (
    ChunkRecord,
    CursorRecord,
    SeriesRecord,
    StoreSize,
    Tier,
    TierSize,
)
from aggregator._history.pushed import (
    DELETE_POINTS,
    SELECT_POINTS,
    SELECT_SERIES,
    UPSERT_POINT,
    UPSERT_SERIES,
    PushedPoint,
    PushedRecord,
    select_points_args,
)
from aggregator._history.store import META_SCHEMA, MIGRATIONS, SCHEMA_VERSION, HistoryStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history_series (
    id INTEGER PRIMARY KEY, service TEXT NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL,
    UNIQUE (service, kind));
CREATE TABLE IF NOT EXISTS history_chunks (
    tier INTEGER NOT NULL, series INTEGER NOT NULL, start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL, samples INTEGER NOT NULL, data BLOB NOT NULL,
    UNIQUE (tier, series, start_ms));
CREATE INDEX IF NOT EXISTS history_chunks_end ON history_chunks (tier, end_ms);
CREATE TABLE IF NOT EXISTS history_head (time_ms INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS history_cursors (
    series INTEGER PRIMARY KEY, data BLOB NOT NULL, time_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pushed_series (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL, type TEXT NOT NULL,
    help TEXT NOT NULL, unit TEXT NOT NULL, UNIQUE (name, labels));
CREATE TABLE IF NOT EXISTS pushed_points (
    series INTEGER NOT NULL, tier INTEGER NOT NULL, bucket_ms INTEGER NOT NULL,
    time_ms INTEGER NOT NULL, value REAL, PRIMARY KEY (series, tier, bucket_ms)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pushed_points_end ON pushed_points (tier, bucket_ms);
"""
PAGE_SIZE = 8192
"""Bytes per page of a new file."""
TIMEOUT_SECONDS = 1.0
"""How long a statement waits for a lock (the file is this process's alone: a checkpoint)."""


class SqliteStore(HistoryStore):
    """The history in the SQLite file at `path` (created with its directory when missing).

    `max_page_count` caps the file at that many pages (a quota: writes past it fail as a full
    disk does). Raises HistoryStoreError naming the file when it cannot be opened.
    """

    def __init__(self, path: Path, tiers: Sequence[Tier], *, max_page_count: int = 0) -> None:
        super().__init__(tiers)
        self.path = path
        self.name = str(path)
        self._read_lock = threading.Lock()
        self._lock_fd = -1
        self._closed = False
        self._max_page_count = max_page_count
        self._write: sqlite3.Connection | None = None
        self._read: sqlite3.Connection | None = None
        self._write_failed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write = self._connect()
            self._lock_file()
            self._prepare(self._write, max_page_count)
            self._read = self._connect()
        except (OSError, sqlite3.Error) as error:
            self.close()
            raise HistoryStoreError(f"cannot open the history store {path}: {error}") from error
        except HistoryStoreError:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        # isolation_level None: no implicit transactions; each method opens its own.
        return sqlite3.connect(
            self.path, timeout=TIMEOUT_SECONDS, check_same_thread=False, isolation_level=None
        )

    def _lock_file(self) -> None:
        self._lock_fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HistoryStoreError(
                f"the history store {self.path} is in use by another aggregator; give each "
                "aggregator its own [history] path"
            ) from None

    @staticmethod
    def _prepare(connection: sqlite3.Connection, max_page_count: int) -> None:
        # 8 KB pages (a new file's; an existing one keeps its own): chunks of 1 to 3 KB leave
        # 400 B of SQLite per chunk instead of 700 with 4 KB (bench/bench_history.py, `disk`);
        # 16 KB saves little more and doubles the write-ahead log.
        connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryStoreError(f"the file refuses WAL mode (journal_mode is {mode})")
        connection.execute("PRAGMA synchronous=NORMAL")
        if max_page_count:
            connection.execute(f"PRAGMA max_page_count={int(max_page_count)}")
        with _transaction(connection):  # executescript would commit on its own
            for statement in filter(str.strip, _SCHEMA.split(";")):
                connection.execute(statement)
            row = connection.execute(
                "SELECT value FROM history_meta WHERE key = ?", (META_SCHEMA,)
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO history_meta (key, value) VALUES (?, ?)",
                    (META_SCHEMA, SCHEMA_VERSION),
                )
            elif MIGRATIONS.get(row[0]) == SCHEMA_VERSION:  # the new tables exist by now
                connection.execute(
                    "UPDATE history_meta SET value = ? WHERE key = ?", (SCHEMA_VERSION, META_SCHEMA)
                )
            elif row[0] != SCHEMA_VERSION:
                raise HistoryStoreError(
                    f"the file has history schema {row[0]}; this aggregator writes {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        """Close both connections and release the file; a second call is harmless."""
        with self._read_lock:
            self._closed = True
            for connection in (self._write, self._read):
                if connection is not None:
                    connection.close()
            self._write = self._read = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The writer's connection in one transaction; HistoryStoreError naming the file."""
        if self._write is None or self._closed:
            raise HistoryStoreError(f"the history store {self.path} is closed")
        try:
            if self._write_failed:
                self._reconnect()
            with _transaction(self._write):
                yield self._write
        except sqlite3.Error as error:
            self._write_failed = True
            raise HistoryStoreError(f"writing the history store {self.path}: {error}") from error

    def _reconnect(self) -> None:
        """A new writer's connection in place of one whose write failed."""
        assert self._write is not None
        self._write.close()
        self._write = self._connect()
        self._prepare(self._write, self._max_page_count)
        self._write_failed = False

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The read connection, for one caller at a time; HistoryStoreError naming the file."""
        with self._read_lock:
            connection = self._read
            if connection is None:
                raise HistoryStoreError(f"the history store {self.path} is closed")
            try:
                with _transaction(connection):
                    yield connection
            except sqlite3.Error as error:
                raise HistoryStoreError(
                    f"reading the history store {self.path}: {error}"
                ) from error

    def series(self) -> list[SeriesRecord]:
        """Every series, by id."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT id, service, kind, type FROM history_series ORDER BY id"
            ).fetchall()
        return [SeriesRecord(*row) for row in rows]

    def append_round(self, time_ms: int, data: bytes, series: Sequence[SeriesRecord] = ()) -> None:
        """One round in one transaction: its head row and its new (or retyped) series."""
        with self._writing() as connection:
            if series:
                connection.executemany(
                    "INSERT INTO history_series (id, service, kind, type) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET type = excluded.type",
                    series,
                )
            connection.execute(
                "INSERT OR REPLACE INTO history_head (time_ms, data) VALUES (?, ?)", (time_ms, data)
            )

    def seal(
        self,
        chunks: Sequence[ChunkRecord],
        cursors: Sequence[CursorRecord],
        head_upto_ms: int,
        meta: Mapping[str, str],
    ) -> None:
        """Chunks, cursors, the head's deletion and meta in one transaction."""
        with self._writing() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO history_chunks "
                "(tier, series, start_ms, end_ms, samples, data) VALUES (?, ?, ?, ?, ?, ?)",
                chunks,
            )
            connection.executemany(
                "INSERT OR REPLACE INTO history_cursors (series, data, time_ms) VALUES (?, ?, ?)",
                cursors,
            )
            connection.execute("DELETE FROM history_head WHERE time_ms <= ?", (head_upto_ms,))
            connection.executemany(
                "INSERT OR REPLACE INTO history_meta (key, value) VALUES (?, ?)", meta.items()
            )

    def head(self) -> list[tuple[int, bytes]]:
        """The head rows, oldest first."""
        with self._reading() as connection:
            return connection.execute(
                "SELECT time_ms, data FROM history_head ORDER BY time_ms"
            ).fetchall()

    def cursors(self) -> dict[int, CursorRecord]:
        """Every stored cursor by series id."""
        with self._reading() as connection:
            rows = connection.execute("SELECT series, data, time_ms FROM history_cursors")
            return {row[0]: CursorRecord(*row) for row in rows}

    def meta(self) -> dict[str, str]:
        """The meta table."""
        with self._reading() as connection:
            return dict(connection.execute("SELECT key, value FROM history_meta").fetchall())

    def chunks(
        self, tier: int, series: Collection[int], start_ms: int, end_ms: int
    ) -> Iterator[ChunkRecord]:
        """The chunks of `tier` and `series` that may hold samples in `(start_ms, end_ms]`."""
        span = self.span_ms(tier)
        lowest = start_ms - span if span is not None else -(2**62)
        query = (
            "SELECT tier, series, start_ms, end_ms, samples, data FROM history_chunks "
            "WHERE tier = ? AND series = ? AND start_ms > ? AND start_ms <= ? AND end_ms > ? "
            "ORDER BY start_ms"
        )
        found: list[ChunkRecord] = []
        with self._reading() as connection:
            for each in series:
                rows = connection.execute(query, (tier, each, lowest, end_ms, start_ms))
                found.extend(ChunkRecord(*row) for row in rows)
        return iter(found)

    def delete_before(self, tier: int, end_ms: int, limit: int) -> int:
        """Delete at most `limit` chunks of `tier` whose last sample is older than `end_ms`."""
        with self._writing() as connection:
            cursor = connection.execute(
                "DELETE FROM history_chunks WHERE rowid IN (SELECT rowid FROM history_chunks "
                "WHERE tier = ? AND end_ms < ? LIMIT ?)",
                (tier, end_ms, limit),
            )
            return max(0, cursor.rowcount)

    def pushed_series(self) -> list[PushedRecord]:
        """Every pushed series, by id."""
        with self._reading() as connection:
            rows = connection.execute(SELECT_SERIES).fetchall()
        return [PushedRecord(*row) for row in rows]

    def append_pushed(self, series: Sequence[PushedRecord], points: Sequence[PushedPoint]) -> None:
        """New or changed series, then the points, in one transaction."""
        with self._writing() as connection:
            if series:
                connection.executemany(UPSERT_SERIES, series)
            connection.executemany(UPSERT_POINT, points)

    def pushed_points(
        self, series: Collection[int], tier: int, start_ms: int, end_ms: int
    ) -> list[PushedPoint]:
        """The points of `series` in `tier` read in `(start_ms, end_ms]`, by series then time."""
        found: list[PushedPoint] = []
        with self._reading() as connection:
            for each in sorted(series):
                rows = connection.execute(
                    SELECT_POINTS, select_points_args(each, tier, start_ms, end_ms)
                )
                found.extend(PushedPoint(*row) for row in rows)
        return found

    def delete_pushed_before(self, tier: int, end_ms: int, limit: int) -> int:
        """Delete at most `limit` points of `tier` whose bucket ends before `end_ms`."""
        with self._writing() as connection:
            return max(0, connection.execute(DELETE_POINTS, (tier, end_ms, limit)).rowcount)

    def size(self) -> StoreSize:
        """Bytes and rows per tier, the head, and the whole file (pages in use or free)."""
        with self._reading() as connection:
            tiers = connection.execute(
                "SELECT tier, count(*), sum(samples), sum(length(data)) FROM history_chunks "
                "GROUP BY tier ORDER BY tier"
            ).fetchall()
            head = connection.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0) FROM history_head"
            ).fetchone()
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            free = connection.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        wal = Path(f"{self.path}-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        return StoreSize(
            tuple(TierSize(*row) for row in tiers),
            head[0],
            head[1],
            pages * page_size + wal_bytes,
            free * page_size,
            wal_bytes,
        )


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """BEGIN ... COMMIT, or ROLLBACK when the block raises."""
    connection.execute("BEGIN")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
