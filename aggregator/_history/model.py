"""The history store's values: series, samples, cursors and the records a backend keeps.

Samples are named tuples rather than frozen dataclasses: the writer builds thousands per round
(one per series), and a frozen dataclass costs several times as much to build
(bench/bench_history.py, `writer`). They are immutable all the same.

Times are integer milliseconds since the epoch; durations are integer nanoseconds (the wire's
`Duration` resolution), so increases and sums are exact. Every sample's time is the **end** of
the interval it covers: a round's sample covers the time since the previous round, a coarse
tier's sample at `T` covers `(T - resolution, T]` (see `tiers.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from mesh_common.status import ServiceStatus


class Tier(NamedTuple):
    """One tier of the store, as Graphite writes it: `resolution:retention` (e.g. `1m:30d`).

    `chunk_ms` is the span of one chunk: chunks cover aligned spans `(S, S + chunk_ms]`, and a
    chunk span is a whole number of the next tier's resolution (`tiers.parse_tiers`). `summary`
    marks the hourly summary the store adds after the configured tiers (`tiers.SUMMARY_MS`).
    """

    resolution_ms: int
    retention_ms: int
    chunk_ms: int
    text: str
    summary: bool = False

    @property
    def key(self) -> int:
        """The tier's key in the store: its resolution in milliseconds."""
        return self.resolution_ms


class SeriesKey(NamedTuple):
    """A series: `(service, kind)`; `kind == ""` is the service itself."""

    service: str
    kind: str


class SeriesRecord(NamedTuple):
    """A series as a backend keeps it: its id, its key and the registry type at write time."""

    id: int
    service: str
    kind: str
    type: str

    @property
    def key(self) -> SeriesKey:
        """The series' `(service, kind)`."""
        return SeriesKey(self.service, self.kind)


class KindSample(NamedTuple):
    """One kind's events over an interval (the increase of the agent's since-start figures).

    `bucket_indexes` are the non-empty latency buckets (`mesh_common.latency` indexes, ascending)
    and `bucket_counts` their counts: the timed events of the interval. `latency_max_ns` is the
    interval's longest duration where the agent's window shows it, else the upper bound of the
    highest bucket (within one bucket, never below the true maximum); None without timed events.
    A round has a kind's sample only when its totals moved (or were reset): an idle kind costs
    nothing, and its service's sample says the round saw it (`ServiceSample.answered`).
    """

    time_ms: int
    events: int
    errors: int
    bucket_indexes: tuple[int, ...]
    bucket_counts: tuple[int, ...]
    latency_sum_ns: int
    latency_max_ns: int | None

    @property
    def timed(self) -> int:
        """How many of the events carried a duration (the sum of the bucket counts)."""
        return sum(self.bucket_counts)


class ServiceSample(NamedTuple):
    """What the rounds of an interval learned about one service (its own series).

    A round's sample has `rounds == 1`; a coarse tier's sample adds its rounds' counts and sums
    and keeps the last status. `calls` counts the rounds that called the agent (none while it
    backs off) and `call_ns` their call latencies; `cpu_milli` sums the agent's
    `cpu_usage_percent` in thousandths of a percent over the `cpu_count` rounds with fresh figures.
    `answered` counts the rounds whose figures were that round's (the agent answered): in such a
    round a kind without a sample had no event (its totals did not move), so its count there is
    0, not unknown (`query.py`). Samples written before it existed have 0 (their kinds have a
    sample in every round their service answered).
    """

    time_ms: int
    rounds: int
    active_rounds: int
    status: ServiceStatus
    calls: int
    call_ns: int
    cpu_milli: int
    cpu_count: int
    answered: int = 0


Sample = KindSample | ServiceSample
"""A sample of either series type."""


class Cursor(NamedTuple):
    """The since-start figures of a kind at its last reading: what the next increase is taken from.

    `lifetime_ns` is the agent's `start_time` (its lifetime) in nanoseconds since the epoch;
    `bucket_offset` and `bucket_counts` are the cumulative latency buckets, dense from the offset
    (a list as read from the wire, a tuple as read back from the store: never changed).
    """

    lifetime_ns: int
    events: int
    errors: int
    bucket_offset: int
    bucket_counts: Sequence[int]
    latency_sum_ns: int


class ChunkRecord(NamedTuple):
    """One stored chunk: one series' consecutive samples of one tier, encoded (`codec.py`).

    `tier` is the tier's resolution in milliseconds (its key in the store); `start_ms` and
    `end_ms` are the times of its first and last sample.
    """

    tier: int
    series: int
    start_ms: int
    end_ms: int
    samples: int
    data: bytes


class CursorRecord(NamedTuple):
    """A series' cursor as stored: encoded (`codec.encode_cursor`), as of `time_ms`."""

    series: int
    data: bytes
    time_ms: int


class TierSize(NamedTuple):
    """What one tier takes in the store."""

    tier: int
    chunks: int
    samples: int
    bytes: int


class StoreSize(NamedTuple):
    """What a store takes: per tier, the head, and the whole database.

    `total_bytes` is everything on disk (pages, indexes, free pages, a write-ahead log);
    `free_bytes` the free pages in it (reused before the file grows) and `log_bytes` the log.
    """

    tiers: tuple[TierSize, ...]
    head_rows: int
    head_bytes: int
    total_bytes: int
    free_bytes: int = 0
    log_bytes: int = 0
