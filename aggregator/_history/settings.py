"""The `[history]` table: whether the aggregator remembers, where, and for how long.

[history]
enabled = true                           # write every round to the store
path = ""                                # SQLite file; "" = history.sqlite3 in the state directory
url = ""                                 # "postgresql://user:password@host/db": PostgreSQL instead
tiers = ["1s:24h", "1m:30d", "5m:90d"]   # Graphite's resolution:retention, finest first
retry_buffer_rounds = 300                # rounds kept in memory while the store fails
max_points_per_series = 11000            # a range query's points per series (Prometheus's limit)
max_series = 500                         # series in one query's answer
query_timeout_seconds = 10.0             # a query running longer is ended (DEADLINE_EXCEEDED)

The state directory is the alert store's (`[alerts] state_dir`, else `$XDG_STATE_HOME/metrics-mesh`
or `~/.local/state/metrics-mesh`), so a mesh keeps its state in one place. The finest tier holds
one sample per round: its resolution is the finest step a query may ask of it. Tiers are kept
by resolution: changing a retention keeps a tier's data, a new tier fills from then on (no
backfill), and the chunks of a tier no longer listed stay in the file, unread. While the store
fails, rounds are kept for `retry_buffer_rounds` rounds (five minutes of 1 s rounds) and
retried; later ones are dropped and counted, and their events are counted by the next round
that is kept (the agents' totals are cumulative), so only their time resolution is lost.

A password in `url` is never printed: `metrics-mesh config check`, log lines and error texts
show `postgresql://user:***@host/db` (`mesh_common.redact`). libpq's own sources work too: leave
the password out of the URL and set `PGPASSWORD` or a `~/.pgpass` line for the aggregator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aggregator._alerts.settings import default_state_dir
from aggregator._history.model import Tier
from aggregator._history.tiers import DEFAULT_TIERS, parse_tiers
from mesh_common.config import Section, setting
from mesh_common.errors import ConfigError
from mesh_common.redact import redact

DATABASE_NAME = "history.sqlite3"
"""The SQLite file's name in the state directory."""
POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes that select the PostgreSQL backend (libpq's two spellings)."""
MAX_RETRY_BUFFER_ROUNDS = 100_000
"""More buffered rounds than this is a mistake (a day of 1 s rounds is 86,400)."""
MAX_QUERY_TIMEOUT_SECONDS = 300.0
"""A longer query timeout is a mistake (a query holds one of the query threads)."""


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """The `[history]` table."""

    enabled: bool = setting(True, "write every round to the history store")
    path: str = setting("", f"the SQLite file ('' = {DATABASE_NAME} in the state directory)")
    url: str = setting("", "a postgresql:// URL: keep the history in PostgreSQL instead")
    tiers: tuple[str, ...] = setting(
        DEFAULT_TIERS, "resolution:retention per tier, finest first (Graphite's syntax)"
    )
    retry_buffer_rounds: int = setting(
        300, "rounds kept in memory and retried while the store fails; later ones are dropped"
    )
    max_points_per_series: int = setting(
        11_000, "most points per series of a range query (Prometheus's limit)"
    )
    max_series: int = setting(500, "most series in the answer to one history query")
    query_timeout_seconds: float = setting(
        10.0, "a history query still running after this long is ended (DEADLINE_EXCEEDED)"
    )

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key."""
        parse_tiers(self.tiers)
        if not 1 <= self.retry_buffer_rounds <= MAX_RETRY_BUFFER_ROUNDS:
            raise ConfigError(
                f"retry_buffer_rounds: {self.retry_buffer_rounds} must be in "
                f"1..{MAX_RETRY_BUFFER_ROUNDS}"
            )
        for name, value in (
            ("max_points_per_series", self.max_points_per_series),
            ("max_series", self.max_series),
        ):
            if not 1 <= value <= 1_000_000:
                raise ConfigError(f"{name}: {value} must be in 1..1000000")
        if not 0 < self.query_timeout_seconds <= MAX_QUERY_TIMEOUT_SECONDS:
            raise ConfigError(
                f"query_timeout_seconds: {self.query_timeout_seconds} must be in "
                f"(0, {MAX_QUERY_TIMEOUT_SECONDS:g}]"
            )
        if self.url:
            if self.path:
                raise ConfigError("url and path: give one (url selects PostgreSQL, path SQLite)")
            check_postgres_url(self.url)

    @property
    def tier_list(self) -> tuple[Tier, ...]:
        """The tiers, parsed, and the hourly summary the store adds (`tiers.py`)."""
        return parse_tiers(self.tiers, summary=True)

    def database_path(self, state_dir: str = "") -> Path:
        """The SQLite file: `path`, else `history.sqlite3` in `state_dir` (or the default one)."""
        if self.path:
            return Path(self.path)
        return Path(state_dir or default_state_dir()) / DATABASE_NAME


def check_postgres_url(url: str) -> None:
    """ConfigError naming the problem when `url` is not a PostgreSQL connection URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises ValueError here)
    except ValueError:
        # Not the parser's words: they quote the "port", which may be part of a password.
        raise ConfigError(
            f"url: not a valid URL ({redact(url)}): its host or port cannot be read; the port "
            "must be a number in 0..65535, and a password's / # ? @ : written %2F %23 %3F %40 %3A"
        ) from None
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"url: scheme {parts.scheme!r} is not PostgreSQL's; use postgresql://user@host/db "
            "(or leave url empty for SQLite)"
        )
    if not parts.netloc and not parts.path.strip("/"):
        raise ConfigError("url: names no host and no database (postgresql://user@host/db)")


SECTION = Section("history", HistorySettings, "the history store: where rounds are kept, how long")
"""The `[history]` table's declaration."""
