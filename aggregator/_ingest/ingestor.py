"""The one ingestion path: every pushed metric and event goes through `Ingestor.ingest`.

The surfaces (the Ingest RPC that seed 003's and seed 004's REST bodies reach, OTLP over gRPC
and over HTTP) turn their input into `MetricPoint` and `KindPoint` values and call `ingest`,
which checks each item (`bounds.py`), keeps what passes (`series.py`, `services.py`) and
answers every refusal with its reason. Nothing is dropped silently: an item is either kept or
listed in the answer, and counted either way. `round()` is what the round loop reads: the
pushed services as rows (entries and outcomes the fold takes like any agent's) and the series
that changed since the previous round (for history and the streams).

Everything runs on the aggregator's event loop (the gRPC servicers and the round loop share
it), so there is no lock.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from aggregator._errors import BatchTooLarge, Refused
from aggregator._fanout import parse_figures
from aggregator._ingest.bounds import Bounds
from aggregator._ingest.model import (
    IngestResult,
    KindPoint,
    MetricPoint,
    PushedSeries,
    Refusal,
)
from aggregator._ingest.series import SeriesTable
from aggregator._ingest.services import PushedService, PushedServices
from aggregator._ingest.settings import IngestSettings
from aggregator._model import CallResult, Health, Outcome
from mesh_common.clocks import Clocks
from mesh_common.registry import ServiceEntry

PUSHED_TYPE = "pushed"
"""The service type of a pushed row."""


class PushedRound(NamedTuple):
    """What a round takes from the path: pushed rows and the series changed since the last."""

    entries: tuple[ServiceEntry, ...]
    outcomes: dict[str, Outcome]
    series: tuple[PushedSeries, ...]
    stream_limit: int
    """How many of `series` a streamed snapshot carries (`max_pushed_per_snapshot`)."""


def pushed_entry(name: str) -> ServiceEntry:
    """The registry entry of a pushed row: no host, no ports, type `pushed`."""
    return ServiceEntry(name, "", 0, 0, PUSHED_TYPE, pushed=True)


class Ingestor:
    """The pushed series and services of one aggregator, and the counters of what came in."""

    def __init__(self, settings: IngestSettings, clocks: Clocks) -> None:
        self.settings = settings
        self._clocks = clocks
        self._bounds = Bounds(settings)
        self.series = SeriesTable(settings)
        self.services = PushedServices(settings)
        self.accepted_total = 0
        """Items kept since start."""
        self.refused_total: collections.Counter[str] = collections.Counter()
        """Items refused since start, by the setting of the cap ("" for a bad item)."""
        self._entries: dict[str, ServiceEntry] = {}

    def reserve(self, names: Iterable[str]) -> None:
        """The registry's service names: pushes may not name one of them."""
        self.services.polled = frozenset(names)

    def ingest(
        self,
        metrics: Sequence[MetricPoint] = (),
        kinds: Sequence[KindPoint] = (),
        *,
        first_kind: int = 0,
    ) -> IngestResult:
        """Keep every item that passes; answer each refused one (`metrics[i]`, `events[i]`).

        Raises BatchTooLarge when either list holds more than `max_batch` items. `first_kind`
        numbers the kinds' items from there (a surface that sends several calls per request).
        """
        limit = self.settings.max_batch
        for what, items in (("metrics", metrics), ("events", kinds)):
            if len(items) > limit:
                raise BatchTooLarge(
                    f"{len(items)} {what} in one request, more than {limit} (max_batch)"
                )
        wall = self._clocks.wall()
        now = self._clocks.monotonic()
        refused: list[Refusal] = []
        bounds = self._bounds
        for index, point in enumerate(metrics):
            try:
                checked = point._replace(
                    name=bounds.name(point.name),
                    value=bounds.value(point.value),
                    help=bounds.text(point.help, "help text"),
                    unit=bounds.text(point.unit, "unit"),
                    service=bounds.text(point.service, "service name"),
                )
                labels = bounds.label_set(point.labels)
                self.series.put(checked, labels, bounds.time(point.time, wall), now)
            except Refused as refusal:
                refused.append(Refusal(f"metrics[{index}]", refusal.reason, refusal.limit))
        for index, kind in enumerate(kinds, first_kind):
            try:
                if not kind.service:
                    raise Refused("the service name is empty")
                if not kind.kind:
                    raise Refused("the kind of event is empty")
                if kind.events < 0 or kind.errors < 0:
                    raise Refused("counts must not be negative")
                # Checked, not copied: a service and kind name is kept once, as a dict key.
                bounds.text(kind.service, "service name")
                bounds.text(kind.kind, "kind")
                time = bounds.time(kind.time, wall)
                if kind.start_time is not None:
                    bounds.time(max(kind.start_time, wall - self.settings.max_past_seconds), wall)
                self.services.add(kind, time, now, wall)
            except Refused as refusal:
                refused.append(Refusal(f"events[{index}]", refusal.reason, refusal.limit))
        accepted = len(metrics) + len(kinds) - len(refused)
        self.accepted_total += accepted
        for item in refused:
            self.refused_total[item.limit] += 1
        return IngestResult(accepted, tuple(refused))

    def round(self) -> PushedRound:
        """The pushed rows as of now, and the series that changed since the previous round.

        Services and series silent for `forget_after_seconds` are dropped first.
        """
        now = self._clocks.monotonic()
        wall = self._clocks.wall()
        before = now - self.settings.forget_after_seconds
        self.series.forget(before)
        for name in self.services.forget(before):
            self._entries.pop(name, None)
        entries = []
        outcomes: dict[str, Outcome] = {}
        for name, service in self.services.services.items():
            entry = self._entries.get(name)
            if entry is None:
                entry = self._entries[name] = pushed_entry(name)
            entries.append(entry)
            outcomes[name] = self._outcome(service, now, wall)
        return PushedRound(
            tuple(entries),
            outcomes,
            tuple(self.series.drain_changed()),
            self.settings.max_pushed_per_snapshot,
        )

    def _outcome(self, service: PushedService, now: float, wall: float) -> Outcome:
        window = service.staleness(self.settings.staleness_seconds)
        silent = now - service.last_push
        if silent > window:
            return Outcome(
                CallResult.STALE,
                Health.UNKNOWN,
                None,
                error=f"no push for {silent:.0f} s (its staleness window is {window:g} s)",
            )
        data = self.services.read(service, now, wall).SerializeToString()
        # Read this round (its `read_time` says how old the pushed figures are), so history
        # takes the row's increase like an agent's answer of this round.
        return Outcome(
            CallResult.OK, Health.SERVING, None, figures=parse_figures(data), received_at=now
        )
