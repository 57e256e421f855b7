"""The PostgreSQL backend (`[history] url = "postgresql://user:password@host/db"`), psycopg 3.

The same tables and semantics as the SQLite backend (`store.py`'s `history_*`, `bytea` for the
blobs), created in the URL's current schema (`?options=-csearch_path%3Dmesh` picks another)
when missing. Every round is one transaction, every seal another. Two connections: the
writer's (the worker thread) and one for reads from query threads, behind a lock.

**Durability.** A round's commit does not wait for the server's disk (`synchronous_commit =
off` on the writer's connection, as SQLite's WAL with `synchronous=NORMAL`): once it returns,
the round is in the server, so a `kill -9` of the aggregator loses nothing committed; a crash
of the *server* may lose its last ~0.6 s of rounds (three `wal_writer_delay`s), which the
running writer still holds in its open chunks and seals all the same. A seal does wait
(`synchronous_commit = on` for its transaction): it deletes the head rows it replaces, so a
seal lost in a server crash after the writer went on would lose its whole span; so does a
round that brings new series (the chunks of every later seal refer to them). Every write
is idempotent (rows replaced by key, the seal's minutes counted from what the database says
is sealed), so a commit whose answer was lost is safely written again.

**Connection loss** (the server stopped or restarted, the network gone): the failed call raises
HistoryStoreError naming the database and the server's reason, the connection is dropped, and
the next call connects again, but no sooner than a backoff (0.5 s, doubling to 8 s while the
connects fail), so a server that is down costs the worker one refused connect per try, not a
timeout per round. The writer (`recorder.py`) buffers, counts and reports meanwhile, and writes
its buffer when a connect succeeds. libpq settings the URL does not set: `connect_timeout` 5 s,
`tcp_user_timeout` 10 s and keepalives (a dead peer is noticed in seconds, not hours),
`application_name`; the writer's statements wait at most `lock_timeout` 5 s for a lock.

**One aggregator per schema.** The writer holds a session advisory lock keyed by its schema
while connected: a second aggregator pointed at the same database and schema is told it is in
use (as SQLite's `flock`), instead of interleaving two histories.

**Seed 004's `system_metrics` view.** Chunks are compressed blobs, so SQL cannot read them cheaply:
each seal also adds, per service and minute, the sums of the minute to `history_minutes` (events,
errors, timed events and their latency sum from the service's kinds; rounds, answered rounds, active
rounds and CPU from its own series), indexed on the minute's end and kept for the minute tier's
retention (the first tier of a minute or coarser: `1m:30d` by default). The view `system_metrics
(service_name, metric_name, value, timestamp, tags)` shows them as seed 004's table does, one row
per service, minute and figure, so seed 004's "Get service health" SQL runs unchanged and reads a
few thousand index entries:

| metric_name | value over the minute (numeric(10,2), rounded to 2 places) |
|---|---|
| response_time | mean latency of the service's timed events, ms (none without timed events) |
| error_rate | failed / all events, a ratio (none without events) |
| events_per_second | events / 60 (none in a minute the agent never answered) |
| cpu_usage_percent | the agent's mean CPU % (none without fresh figures) |
| availability | active rounds / rounds, a ratio |

`timestamp` is the minute's **end** (a sample's time is the end of what it covers, `tiers.py`)
as `timestamptz`, where seed 004 writes `TIMESTAMP`: with a zone the seed's
`timestamp >= NOW() - INTERVAL '1 hour'` is right under any session TimeZone and uses the
index. `tags` is `{"type": <registry type>}`. The kinds are not rows of their own: seed 004's
query groups by service only, and a kind's rows would be averaged into its service's.
**Freshness:** a minute appears when the finest tier seals it: with the default 2-minute
chunks, 0 to 60 s after it ends, so the view is at most two minutes behind the rounds (never a
partial minute: one a seal only partly covers stays hidden until the next seal completes it).
A finest tier coarser than a minute gives rows of its resolution rounded up to whole minutes
(the rate divides by their span).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aggregator._errors import HistoryStoreError
from aggregator._history.codec import between, decode_chunk
from aggregator._history.model import (
    ChunkRecord,
    CursorRecord,
    KindSample,
    SeriesRecord,
    ServiceSample,
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
from aggregator._history.samples import rollup_columns
from aggregator._history.store import (
    META_SCHEMA,
    META_SEALED,
    MIGRATIONS,
    SCHEMA_VERSION,
    HistoryStore,
)
from mesh_common.clocks import ReadClock
from mesh_common.redact import redact

_LOG = logging.getLogger("aggregator.history")
_T = TypeVar("_T")

_TABLES = (
    """CREATE TABLE IF NOT EXISTS history_series (
        id integer PRIMARY KEY, service text NOT NULL, kind text NOT NULL, type text NOT NULL,
        UNIQUE (service, kind))""",
    """CREATE TABLE IF NOT EXISTS history_chunks (
        tier integer NOT NULL, series integer NOT NULL, start_ms bigint NOT NULL,
        end_ms bigint NOT NULL, samples integer NOT NULL, data bytea NOT NULL,
        PRIMARY KEY (tier, series, start_ms))""",
    # Chunks are zlib already: stored as they are, in the row up to a page.
    "ALTER TABLE history_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
    "ALTER TABLE history_chunks SET (toast_tuple_target = 8160)",
    "CREATE INDEX IF NOT EXISTS history_chunks_end ON history_chunks (tier, end_ms)",
    "CREATE TABLE IF NOT EXISTS history_head (time_ms bigint PRIMARY KEY, data bytea NOT NULL)",
    """CREATE TABLE IF NOT EXISTS history_cursors (
        series integer PRIMARY KEY, data bytea NOT NULL, time_ms bigint NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS history_meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE IF NOT EXISTS history_minutes (
        end_time timestamptz NOT NULL, service integer NOT NULL, seconds integer NOT NULL,
        complete boolean NOT NULL, kind_samples integer NOT NULL, events bigint NOT NULL,
        errors bigint NOT NULL, timed bigint NOT NULL, latency_ns bigint NOT NULL,
        rounds integer NOT NULL, active_rounds integer NOT NULL, cpu_milli bigint NOT NULL,
        cpu_count integer NOT NULL, answered integer NOT NULL,
        PRIMARY KEY (end_time, service))""",
)
_PUSHED_TABLES = (
    """CREATE TABLE IF NOT EXISTS pushed_series (
        id integer PRIMARY KEY, name text NOT NULL, labels text NOT NULL, type text NOT NULL,
        help text NOT NULL, unit text NOT NULL, UNIQUE (name, labels))""",
    """CREATE TABLE IF NOT EXISTS pushed_points (
        series integer NOT NULL, tier bigint NOT NULL, bucket_ms bigint NOT NULL,
        time_ms bigint NOT NULL, value double precision,
        PRIMARY KEY (series, tier, bucket_ms))""",
    "CREATE INDEX IF NOT EXISTS pushed_points_end ON pushed_points (tier, bucket_ms)",
)
"""The pushed series' tables (`pushed.py`): part of a new store, added to one of schema 1."""
VIEW = "system_metrics"
"""Seed 004's table name, here a view over `history_minutes`."""
_VIEW_SQL = f"""CREATE OR REPLACE VIEW {VIEW} AS
SELECT s.service AS service_name, f.metric_name,
       least(f.value, 99999999.99)::numeric(10, 2) AS value,
       m.end_time AS "timestamp", jsonb_build_object('type', s.type) AS tags
FROM history_minutes AS m
JOIN history_series AS s ON s.id = m.service
CROSS JOIN LATERAL (VALUES
    ('response_time', m.latency_ns::numeric / nullif(m.timed, 0) / 1000000),
    ('error_rate', m.errors::numeric / nullif(m.events, 0)),
    ('events_per_second',
     CASE WHEN m.kind_samples > 0 OR m.answered > 0 THEN m.events::numeric / m.seconds END),
    ('cpu_usage_percent', m.cpu_milli::numeric / nullif(m.cpu_count, 0) / 1000),
    ('availability', m.active_rounds::numeric / nullif(m.rounds, 0))
) AS f (metric_name, value)
WHERE m.complete AND f.value IS NOT NULL"""
_MINUTE_COLUMNS = (
    "kind_samples", "events", "errors", "timed", "latency_ns",
    "rounds", "active_rounds", "cpu_milli", "cpu_count", "answered",
)  # fmt: skip
_UPSERT_MINUTES = f"""
INSERT INTO history_minutes AS m
    (end_time, service, seconds, complete, {", ".join(_MINUTE_COLUMNS)})
SELECT timestamptz 'epoch' + u.t * interval '1 millisecond', u.s, %(seconds)s, u.t <= %(upto)s,
       {", ".join(f"u.{name}" for name in _MINUTE_COLUMNS)}
FROM unnest(%(t)s::bigint[], %(s)s::integer[],
            {", ".join(f"%({name})s::bigint[]" for name in _MINUTE_COLUMNS)})
     AS u (t, s, {", ".join(_MINUTE_COLUMNS)})
ON CONFLICT (end_time, service) DO UPDATE SET complete = excluded.complete,
    {", ".join(f"{name} = m.{name} + excluded.{name}" for name in _MINUTE_COLUMNS)}
"""

DEFAULT_PARAMETERS = {
    "connect_timeout": "5",
    "tcp_user_timeout": "10000",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "application_name": "metrics-mesh aggregator",
}
"""libpq settings used unless the URL gives its own (see the module doc)."""
LOCK_TIMEOUT = "5s"
"""The writer's statements wait at most this long for a table lock (then the round is retried)."""
BACKOFF_SECONDS = (0.5, 8.0)
"""The first and the longest pause between connects while they fail."""
LOCK_CLASS = 0x6D6D6869
"""The advisory lock's first key ("mmhi"); the second is the schema's hash."""
MINUTE_MS = 60_000
MINUTE_ROWS_PER_CHUNK = 100
"""Retention deletes at most this many minute rows per chunk of its batch."""


def row_span_ms(finest: Tier) -> int:
    """The span of a `history_minutes` row: a minute, or the finest tier's whole minutes."""
    return math.ceil(finest.resolution_ms / MINUTE_MS) * MINUTE_MS


def row_tier(tiers: Sequence[Tier]) -> Tier:
    """The tier whose retention the minute rows keep: the first of a minute or coarser."""
    return next((tier for tier in tiers if tier.resolution_ms >= MINUTE_MS), tiers[-1])


def connection_parameters(url: str) -> dict[str, str]:
    """The libpq parameters of `url` with DEFAULT_PARAMETERS added; HistoryStoreError if bad."""
    try:
        parameters = conninfo_to_dict(url)
    except psycopg.Error as error:
        raise HistoryStoreError(
            f"the history URL {redact(url)} is invalid: {_says(error, url)}"
        ) from None
    return {**DEFAULT_PARAMETERS, **{key: str(value) for key, value in parameters.items()}}


def _says(error: BaseException, url: str) -> str:
    """An error's text on one line, passwords masked."""
    return redact(" ".join(str(error).split()) or type(error).__name__, url)


class _Connection:
    """One connection, opened on demand and again after it failed (no sooner than a backoff)."""

    def __init__(
        self,
        url: str,
        prepare: Callable[[psycopg.Connection[Any]], None],
        monotonic: ReadClock,
    ) -> None:
        self._url = url
        self._conninfo = make_conninfo("", **connection_parameters(url))
        self._prepare = prepare
        self._monotonic = monotonic
        self._connection: psycopg.Connection[Any] | None = None
        self._pause = 0.0
        self._retry_at = float("-inf")
        self._reason = ""

    def get(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one; HistoryStoreError when it cannot be had."""
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        name = redact(self._url)
        now = self._monotonic()
        if now < self._retry_at:
            raise HistoryStoreError(
                f"cannot connect to the history store {name}: {self._reason} "
                f"(next try in {self._retry_at - now:.1f} s)"
            )
        try:
            connection = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as error:
            self._failed(now, _says(error, self._url))
            raise HistoryStoreError(
                f"cannot connect to the history store {name}: {self._reason}"
            ) from None
        try:
            self._prepare(connection)
        except (psycopg.Error, HistoryStoreError) as error:
            connection.close()
            self._failed(now, _says(error, self._url))
            if isinstance(error, HistoryStoreError):
                raise
            raise HistoryStoreError(
                f"cannot prepare the history store {name}: {self._reason}"
            ) from None
        self._pause, self._connection = 0.0, connection
        return connection

    def _failed(self, now: float, reason: str) -> None:
        first, longest = BACKOFF_SECONDS
        self._pause = min(longest, self._pause * 2 if self._pause else first)
        self._retry_at = now + self._pause
        self._reason = reason

    def drop(self) -> None:
        """Close the connection (after a failure); the next `get` connects again."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()


class PostgresStore(HistoryStore):
    """The history in the PostgreSQL database at `url` (see the module doc).

    Raises HistoryStoreError naming the database (its password masked) when it cannot be
    reached, is in use by another aggregator, or holds another schema version.
    """

    def __init__(
        self, url: str, tiers: Sequence[Tier], *, monotonic: ReadClock = time.monotonic
    ) -> None:
        super().__init__(tiers)
        self.url = url
        self.name = redact(url)
        self._finest = tiers[0].key
        self._row_ms = row_span_ms(tiers[0])
        self._row_tier = row_tier(tiers).key
        self._services: dict[int, int] = {}
        """Each series id's service series id (its own for a service series)."""
        self._read_lock = threading.Lock()
        self._closed = False
        self._session: tuple[Any, ...] | None = None
        """The writer's last server session (pid, start), to tell it from another's."""
        self._writer = _Connection(url, self._prepare_writer, monotonic)
        self._reader = _Connection(url, lambda connection: None, monotonic)
        try:
            self._writer.get()
            self._reader.get()
        except HistoryStoreError:
            self.close()
            raise

    def _prepare_writer(self, connection: psycopg.Connection[Any]) -> None:
        """Session settings, the advisory lock, the tables when missing, the schema version."""
        connection.execute("SET synchronous_commit = off")
        connection.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        locked = self._lock(connection)
        if not locked and self._session is not None:
            # Our own session from before a cut connection, which the server has not noticed
            # yet (it holds the lock until its TCP keepalive gives up): end it, take over.
            connection.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE pid = %s AND backend_start = %s",
                self._session,
            )
            locked = self._lock(connection)
        if not locked:
            raise HistoryStoreError(
                f"the history store {self.name} is in use by another aggregator; give each "
                "aggregator its own database or schema (options=-csearch_path%3D<schema>)"
            )
        self._session = connection.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()
        with connection.transaction():
            exists = connection.execute("SELECT to_regclass('history_meta')").fetchone()
            if exists is None or exists[0] is None:
                self._create(connection)
            found = connection.execute(
                "SELECT value FROM history_meta WHERE key = %s", (META_SCHEMA,)
            ).fetchone()
            if found is None:
                connection.execute(
                    "INSERT INTO history_meta (key, value) VALUES (%s, %s)",
                    (META_SCHEMA, SCHEMA_VERSION),
                )
            elif MIGRATIONS.get(found[0]) == SCHEMA_VERSION:
                for statement in _PUSHED_TABLES:
                    connection.execute(statement)
                connection.execute(
                    "UPDATE history_meta SET value = %s WHERE key = %s",
                    (SCHEMA_VERSION, META_SCHEMA),
                )
            elif found[0] != SCHEMA_VERSION:
                raise HistoryStoreError(
                    f"the database has history schema {found[0]}; this aggregator writes "
                    f"{SCHEMA_VERSION}"
                )

    @staticmethod
    def _lock(connection: psycopg.Connection[Any]) -> bool:
        """Take the current schema's advisory lock (False: another session holds it)."""
        row = connection.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (LOCK_CLASS,)
        ).fetchone()
        return bool(row and row[0])

    def _create(self, connection: psycopg.Connection[Any]) -> None:
        """The tables, and seed 004's view unless a relation of that name is there already."""
        for statement in (*_TABLES, *_PUSHED_TABLES):
            connection.execute(statement)
        other = connection.execute(
            "SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)", (VIEW,)
        ).fetchone()
        if other is None:
            connection.execute(_VIEW_SQL)
        else:
            _LOG.warning(
                "history: %s already holds a relation %s (not the history's): the view of "
                "seed 004's figures is not created; give the history its own schema to have it",
                self.name,
                VIEW,
            )

    def close(self) -> None:
        """Close both connections (the advisory lock goes with the writer's); harmless twice."""
        with self._read_lock:
            self._closed = True
            self._writer.drop()
            self._reader.drop()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[psycopg.Connection[Any]]:
        """The writer's connection in one transaction; HistoryStoreError naming the database."""
        if self._closed:
            raise HistoryStoreError(f"the history store {self.name} is closed")
        connection = self._writer.get()
        try:
            with connection.transaction():
                yield connection
        except psycopg.Error as error:
            if connection.closed or isinstance(error, psycopg.OperationalError):
                self._writer.drop()
            raise HistoryStoreError(
                f"writing the history store {self.name}: {_says(error, self.url)}"
            ) from None

    def _read(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """`work` on the read connection, one caller at a time; HistoryStoreError naming the db.

        A connection found lost (the server restarted since) is opened again and `work` tried
        once more, so a reader does not fail for a restart it did not see.
        """
        with self._read_lock:
            for again in (True, False):
                if self._closed:
                    raise HistoryStoreError(f"the history store {self.name} is closed")
                connection = self._reader.get()
                try:
                    return work(connection)
                except psycopg.Error as error:
                    lost = connection.closed or isinstance(error, psycopg.OperationalError)
                    if lost:
                        self._reader.drop()
                    if not (lost and again):
                        raise HistoryStoreError(
                            f"reading the history store {self.name}: {_says(error, self.url)}"
                        ) from None
        raise AssertionError("unreachable")

    def series(self) -> list[SeriesRecord]:
        """Every series, by id."""
        rows = self._read(
            lambda connection: connection.execute(
                "SELECT id, service, kind, type FROM history_series ORDER BY id"
            ).fetchall()
        )
        return [SeriesRecord(*row) for row in rows]

    def append_round(self, time_ms: int, data: bytes, series: Sequence[SeriesRecord] = ()) -> None:
        """One round in one transaction: its head row and its new (or retyped) series."""
        with self._writing() as connection, connection.cursor() as cursor:
            if series:  # rare, and every later seal refers to them: waits for the disk
                cursor.execute("SET LOCAL synchronous_commit = on")
                cursor.executemany(
                    "INSERT INTO history_series (id, service, kind, type) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET type = excluded.type",
                    series,
                )
            cursor.execute(
                "INSERT INTO history_head (time_ms, data) VALUES (%s, %b) "
                "ON CONFLICT (time_ms) DO UPDATE SET data = excluded.data",
                (time_ms, data),
            )

    def seal(
        self,
        chunks: Sequence[ChunkRecord],
        cursors: Sequence[CursorRecord],
        head_upto_ms: int,
        meta: Mapping[str, str],
    ) -> None:
        """Chunks, cursors, the head's deletion, meta and the sealed minutes in one transaction."""
        with self._writing() as connection, connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = on")  # see the module doc
            row = cursor.execute(
                "SELECT value FROM history_meta WHERE key = %s", (META_SEALED,)
            ).fetchone()
            sealed_ms = int(row[0]) if row is not None else -(2**62)
            minutes = self._minutes(cursor, chunks, sealed_ms, head_upto_ms)
            cursor.executemany(
                "INSERT INTO history_chunks (tier, series, start_ms, end_ms, samples, data) "
                "VALUES (%s, %s, %s, %s, %s, %b) ON CONFLICT (tier, series, start_ms) DO UPDATE "
                "SET end_ms = excluded.end_ms, samples = excluded.samples, data = excluded.data",
                chunks,
            )
            cursor.executemany(
                "INSERT INTO history_cursors (series, data, time_ms) VALUES (%s, %b, %s) "
                "ON CONFLICT (series) DO UPDATE "
                "SET data = excluded.data, time_ms = excluded.time_ms",
                cursors,
            )
            cursor.execute("DELETE FROM history_head WHERE time_ms <= %s", (head_upto_ms,))
            cursor.executemany(
                "INSERT INTO history_meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(meta.items()),
            )
            if minutes:
                cursor.execute(_UPSERT_MINUTES, self._minute_arrays(minutes, head_upto_ms))

    def _minutes(
        self,
        cursor: psycopg.Cursor[Any],
        chunks: Sequence[ChunkRecord],
        sealed_ms: int,
        upto_ms: int,
    ) -> dict[tuple[int, int], list[int]]:
        """Per (row end, service id): the sums of the finest samples in `(sealed_ms, upto_ms]`.

        The lower bound is what the database says is sealed, so a seal written again after a
        commit whose answer was lost adds nothing twice.
        """
        finest = [chunk for chunk in chunks if chunk.tier == self._finest]
        unknown = {chunk.series for chunk in finest} - self._services.keys()
        if unknown:
            self._learn_services(cursor)
        rows: dict[tuple[int, int], list[int]] = {}
        for chunk in finest:
            if chunk.end_ms <= sealed_ms or chunk.start_ms > upto_ms:
                continue
            service = self._services.get(chunk.series)
            if service is None:  # a series the database does not know: nothing to add to
                continue
            columns = between(decode_chunk(chunk.data), sealed_ms, upto_ms)
            for sample in rollup_columns(columns, self._row_ms).samples():
                sums = rows.setdefault((sample.time_ms, service), [0] * len(_MINUTE_COLUMNS))
                _add(sums, sample)
        return rows

    def _learn_services(self, cursor: psycopg.Cursor[Any]) -> None:
        """Map every stored series to its service's own series."""
        records = [SeriesRecord(*row) for row in cursor.execute(
            "SELECT id, service, kind, type FROM history_series"
        )]  # fmt: skip
        own = {record.service: record.id for record in records if record.kind == ""}
        self._services = {
            record.id: own[record.service] for record in records if record.service in own
        }

    def _minute_arrays(
        self, minutes: dict[tuple[int, int], list[int]], upto_ms: int
    ) -> dict[str, Any]:
        """The upsert's parameters: one array per column."""
        keys = list(minutes)
        arrays: dict[str, Any] = {
            "seconds": self._row_ms // 1000,
            "upto": upto_ms,
            "t": [end for end, _ in keys],
            "s": [service for _, service in keys],
        }
        for position, name in enumerate(_MINUTE_COLUMNS):
            arrays[name] = [minutes[key][position] for key in keys]
        return arrays

    def head(self) -> list[tuple[int, bytes]]:
        """The head rows, oldest first."""
        rows = self._read(
            lambda connection: connection.execute(
                "SELECT time_ms, data FROM history_head ORDER BY time_ms", binary=True
            ).fetchall()
        )
        return [(time_ms, bytes(data)) for time_ms, data in rows]

    def cursors(self) -> dict[int, CursorRecord]:
        """Every stored cursor by series id."""
        rows = self._read(
            lambda connection: connection.execute(
                "SELECT series, data, time_ms FROM history_cursors", binary=True
            ).fetchall()
        )
        return {
            series: CursorRecord(series, bytes(data), time_ms) for series, data, time_ms in rows
        }

    def meta(self) -> dict[str, str]:
        """The meta table."""
        rows = self._read(
            lambda connection: connection.execute("SELECT key, value FROM history_meta").fetchall()
        )
        return dict(rows)

    def chunks(
        self, tier: int, series: Collection[int], start_ms: int, end_ms: int
    ) -> Iterator[ChunkRecord]:
        """The chunks of `tier` and `series` that may hold samples in `(start_ms, end_ms]`."""
        span = self.span_ms(tier)
        lowest = start_ms - span if span is not None else -(2**62)
        rows = self._read(
            lambda connection: connection.execute(
                "SELECT tier, series, start_ms, end_ms, samples, data FROM history_chunks "
                "WHERE tier = %s AND series = ANY(%s::integer[]) AND start_ms > %s "
                "AND start_ms <= %s AND end_ms > %s ORDER BY series, start_ms",
                (tier, list(series), lowest, end_ms, start_ms),
                binary=True,
            ).fetchall()
        )
        return iter(
            [
                ChunkRecord(tier, series, start, end, samples, bytes(data))
                for tier, series, start, end, samples, data in rows
            ]
        )

    def delete_before(self, tier: int, end_ms: int, limit: int) -> int:
        """Delete at most `limit` chunks of `tier` whose last sample is older than `end_ms`.

        The minute tier's retention also deletes minute rows (at most MINUTE_ROWS_PER_CHUNK
        times `limit`; a full batch of them counts as `limit`, so the writer comes back).
        """
        with self._writing() as connection:
            deleted = connection.execute(
                "DELETE FROM history_chunks WHERE ctid = ANY(ARRAY(SELECT ctid FROM "
                "history_chunks WHERE tier = %s AND end_ms < %s LIMIT %s))",
                (tier, end_ms, limit),
            ).rowcount
            if tier == self._row_tier:
                batch = limit * MINUTE_ROWS_PER_CHUNK
                rows = connection.execute(
                    "DELETE FROM history_minutes WHERE ctid = ANY(ARRAY(SELECT ctid FROM "
                    "history_minutes WHERE end_time < timestamptz 'epoch' + %s * "
                    "interval '1 millisecond' LIMIT %s))",
                    (end_ms, batch),
                ).rowcount
                if rows >= batch:
                    deleted = max(deleted, limit)
            return max(0, deleted)

    def pushed_series(self) -> list[PushedRecord]:
        """Every pushed series, by id."""
        rows = self._read(lambda connection: connection.execute(SELECT_SERIES).fetchall())
        return [PushedRecord(*row) for row in rows]

    def append_pushed(self, series: Sequence[PushedRecord], points: Sequence[PushedPoint]) -> None:
        """New or changed series, then the points, in one transaction."""
        with self._writing() as connection, connection.cursor() as cursor:
            if series:  # as new mesh series: later points refer to them, so it waits for the disk
                cursor.execute("SET LOCAL synchronous_commit = on")
                cursor.executemany(_pg(UPSERT_SERIES), series)
            cursor.executemany(_pg(UPSERT_POINT), points)

    def pushed_points(
        self, series: Collection[int], tier: int, start_ms: int, end_ms: int
    ) -> list[PushedPoint]:
        """The points of `series` in `tier` read in `(start_ms, end_ms]`, by series then time."""

        def read(connection: psycopg.Connection[Any]) -> list[PushedPoint]:
            found: list[PushedPoint] = []
            with connection.cursor() as cursor:
                for each in sorted(series):
                    rows = cursor.execute(
                        _pg(SELECT_POINTS), select_points_args(each, tier, start_ms, end_ms)
                    )
                    found.extend(PushedPoint(*row) for row in rows)
            return found

        return self._read(read)

    def delete_pushed_before(self, tier: int, end_ms: int, limit: int) -> int:
        """Delete at most `limit` points of `tier` whose bucket ends before `end_ms`."""
        with self._writing() as connection:
            return max(0, connection.execute(_pg(DELETE_POINTS), (tier, end_ms, limit)).rowcount)

    def size(self) -> StoreSize:
        """Bytes and rows per tier, the head, and every history table with its indexes."""
        tiers, head, total = self._read(_sizes)
        return StoreSize(
            tuple(
                TierSize(tier, count, int(samples), int(size))
                for tier, count, samples, size in tiers
            ),
            head[0],
            int(head[1]),
            total,
        )


def _pg(sql: str) -> str:
    """SQL shared with SQLite (`?` placeholders) in psycopg's placeholders."""
    return sql.replace("?", "%s")


def _add(sums: list[int], sample: KindSample | ServiceSample) -> None:
    """Add a sample to a minute row's sums (`_MINUTE_COLUMNS` order)."""
    if isinstance(sample, KindSample):
        sums[0] += 1
        sums[1] += sample.events
        sums[2] += sample.errors
        sums[3] += sample.timed
        sums[4] += sample.latency_sum_ns
    else:
        sums[5] += sample.rounds
        sums[6] += sample.active_rounds
        sums[7] += sample.cpu_milli
        sums[8] += sample.cpu_count
        sums[9] += sample.answered


def _sizes(
    connection: psycopg.Connection[Any],
) -> tuple[list[tuple[Any, ...]], tuple[Any, ...], int]:
    """Per tier (tier, chunks, samples, bytes); the head's (rows, bytes); the tables' bytes."""
    tiers = connection.execute(
        "SELECT tier, count(*), sum(samples), sum(octet_length(data)) "
        "FROM history_chunks GROUP BY tier ORDER BY tier"
    ).fetchall()
    head = connection.execute(
        "SELECT count(*), coalesce(sum(octet_length(data)), 0) FROM history_head"
    ).fetchone()
    total = connection.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace "
        "AND (c.relname LIKE 'history\\_%' OR c.relname LIKE 'pushed\\_%')"
    ).fetchone()
    assert head is not None and total is not None
    return tiers, head, int(total[0])
