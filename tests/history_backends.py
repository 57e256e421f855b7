"""The history's backends for the store-level tests: one object per backend, the same methods.

The `history_backend` fixture (conftest.py) gives a test each backend in turn: SQLite (a file
in tmp_path) and PostgreSQL (a new database on the session's real server, or skipped with
the reason it cannot be started). A test opens stores, configures an aggregator and damages a
stored row through it, never through backend-specific code of its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from aggregator._history import HistorySettings, HistoryStore, Tier, parse_tiers
from aggregator._history.postgres import PostgresStore
from aggregator._history.sqlite import SqliteStore
from aggregator._history.store import StoreOpener
from aggregator._history.tiers import DEFAULT_TIERS
from tests.postgres_server import PostgresServer

TIERS = parse_tiers(DEFAULT_TIERS)


class HistoryBackend:
    """What a test needs of a backend (see the module doc)."""

    name: str

    def open(self, tiers: Sequence[Tier] = TIERS) -> HistoryStore:
        """A store on this backend's database (opened now)."""
        raise NotImplementedError

    def opener(self, tiers: Sequence[Tier] = TIERS) -> StoreOpener:
        """A function opening the store, as the writer is given one."""
        return lambda: self.open(tiers)

    @property
    def settings(self) -> dict[str, str]:
        """The `[history]` keys that select this database (`path` or `url`)."""
        raise NotImplementedError

    def history_settings(self, **history: Any) -> HistorySettings:
        return HistorySettings(**self.settings, **history)

    def toml(self) -> str:
        """The `[history]` line selecting this database in a mesh file."""
        ((key, value),) = self.settings.items()
        return f'{key} = "{value}"'

    def damage_head_row(self, offset: int) -> None:
        """Overwrite the data of the head row at `offset` (oldest first) with garbage."""
        raise NotImplementedError

    def execute(self, *statements: str) -> None:
        """Run SQL on the database as another client (no placeholders)."""
        raise NotImplementedError

    def make_schema_1(self) -> None:
        """Turn the store into one written before pushed series: schema 1, no pushed tables."""
        self.execute(
            "DROP TABLE pushed_points",
            "DROP TABLE pushed_series",
            "UPDATE history_meta SET value = '1' WHERE key = 'schema'",
        )


@dataclass
class SqliteBackend(HistoryBackend):
    path: Path
    name: str = "sqlite"

    def open(self, tiers: Sequence[Tier] = TIERS) -> HistoryStore:
        return SqliteStore(self.path, tiers)

    @property
    def settings(self) -> dict[str, str]:
        return {"path": str(self.path)}

    def execute(self, *statements: str) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as database, database:
            for statement in statements:
                database.execute(statement)

    def damage_head_row(self, offset: int) -> None:
        with sqlite3.connect(self.path) as database:
            database.execute(
                "UPDATE history_head SET data = x'01ff' WHERE time_ms = "
                "(SELECT time_ms FROM history_head ORDER BY time_ms LIMIT 1 OFFSET ?)",
                (offset,),
            )


@dataclass
class PostgresBackend(HistoryBackend):
    server: PostgresServer
    database: str
    name: str = "postgresql"

    @property
    def url(self) -> str:
        return self.server.url(self.database)

    def open(self, tiers: Sequence[Tier] = TIERS) -> HistoryStore:
        return PostgresStore(self.url, tiers)

    @property
    def settings(self) -> dict[str, str]:
        return {"url": self.url}

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A connection of its own to the database (autocommit), as another client's."""
        return psycopg.connect(self.url, autocommit=True)

    def execute(self, *statements: str) -> None:
        with self.connect() as database:
            for statement in statements:
                database.execute(statement.encode())

    def damage_head_row(self, offset: int) -> None:
        with self.connect() as database:
            database.execute(
                "UPDATE history_head SET data = '\\x01ff'::bytea WHERE time_ms = "
                "(SELECT time_ms FROM history_head ORDER BY time_ms LIMIT 1 OFFSET %s)",
                (offset,),
            )
