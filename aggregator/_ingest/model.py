"""The ingestion path's values: what a surface hands in, and what the path answers.

Every surface (the Ingest RPC behind seed 003's and seed 004's REST bodies, OTLP over gRPC and
HTTP) turns its input into these values and hands them to `Ingestor.ingest`, the one path.
Times are epoch seconds (wall clock) as the pusher stated them; None means "when received".
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from enum import StrEnum
from typing import NamedTuple

from mesh_common.latency import Histogram

Labels = tuple[tuple[str, str], ...]
"""A label set: (name, value) pairs sorted by name."""

PUSHED_LOOKBACK_SECONDS = 300.0
"""A pushed series' value stands for this long after it was read, then it is unknown
(Prometheus's 5-minute lookback): history's steps and alert rules read it so."""


class MetricType(StrEnum):
    """How a pushed series' values are read."""

    GAUGE = "gauge"
    """The latest value counts; it goes up and down."""
    COUNTER = "counter"
    """A running total: a value below the previous one is a reset, never a negative increase."""


class MetricPoint(NamedTuple):
    """One value of a pushed series (seed 003's ingest body, or an OTLP gauge or sum)."""

    name: str
    type: MetricType
    value: float
    labels: Mapping[str, str]
    """As sent: the path checks them and keeps them as a sorted `Labels` tuple."""
    help: str = ""
    unit: str = ""
    time: float | None = None
    service: str = ""
    """The pushed service it came with (OTLP's `service.name`); "" for seed 003's series."""


class Durations(NamedTuple):
    """Timed events as sparse mesh buckets, their sum and their longest, in seconds.

    `buckets` maps a mesh bucket index to its count (non-empty ones only): what a surface that
    builds buckets itself hands in (an OTLP histogram fills a few dozen of the mesh's hundreds).
    """

    buckets: Mapping[int, int]
    sum_seconds: float
    max_seconds: float


class KindPoint(NamedTuple):
    """Events of one kind of a pushed service.

    With `stream` None the counts are new events (a delta: seed 004's events, OTLP delta
    temporality). With a `stream` they are a cumulative reading of that stream (an OTLP data
    point's identity): the path adds what grew since the stream's previous reading, and a
    reading below it is a reset (the pusher restarted), counted from 0. `latency` holds the
    durations of the timed events (mesh buckets), delta or cumulative like the counts.
    """

    service: str
    kind: str
    events: int
    errors: int
    latency: Histogram | Durations | None = None
    time: float | None = None
    stream: Hashable | None = None
    start_time: float | None = None
    """When the counts began (OTLP's start_time_unix_nano); None when unknown."""


class Refusal(NamedTuple):
    """Why one item was refused: `item` names it (`metrics[3]`), `limit` the cap's setting."""

    item: str
    reason: str
    limit: str = ""


class IngestResult(NamedTuple):
    """What the path kept: every item not refused was kept."""

    accepted: int
    refused: tuple[Refusal, ...]


class PushedSeries(NamedTuple):
    """The latest value of one pushed series, as read out (ListPushed, streams, history).

    `value` is as pushed; for a counter `total` is the reset-aware running total (the sum of
    its increases since the mesh first saw it, the first value included), for a gauge the value.
    """

    name: str
    type: MetricType
    labels: Labels
    value: float
    total: float
    time: float
    help: str
    unit: str
    service: str
