"""The WebSocket's vocabulary: seed 002's and seed 003's names mapped onto the mesh, and parsing.

Metric types (what a subscription yields per snapshot, `gateway._ws_items`):

  system        the totals of the kept services (`TOTAL_FIGURES`, `snapshot_age_ms`), one item
  agent         one item per service: its row (`service` is a synonym)
  business      one item per service: its per-kind event figures (the row's `kinds`)
  hero          one small headline item: the kept services' events/s, active of total, error rate,
                p99, firing alerts
  presentation  the whole dashboard body: the REST body of the client's view
  alerts        `{"type": "alert", "data": {...}}` per alert change
  metrics       seed 003's subscription: `{"type": "metric_update", "data": {"metrics":
                [...]}}`, one message per snapshot
  all           system, agent, business, hero, presentation and alerts

An item's `metric_type` is the name the client subscribed with (`service` or `agent`); both
name the same subscription, so a client never gets a row twice.

Fields (`set_filters` `fields`): the row schema's names (`mesh_common.figures`, also those of
the totals, the kinds and the hero item) or seed 002's names where the mesh has the figure
(`SEED_FIELDS`); the data carries each figure under the name the client asked for. Seed names
the mesh has no figure for (`UNMAPPED_SEED_FIELDS`) are ignored, with the reason.

Partial application: an unknown metric type, field, filter, service name or service type in
an otherwise good message is left out and the confirmation lists it under `ignored`
(`{"<what>": value, "reason": ...}`, `<what>` being `metric_type`, `subscription`, `filter`,
`agent_id`, `service_name`, `service_type` or `field`); the rest is applied. A list of which
every entry is ignored leaves that filter as it was (an `agent_ids` of unknown names never
empties the view). A message that is wholly wrong (not JSON, an unknown `type`, a value of the
wrong JSON type) is a `ProtocolError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway._errors import ProtocolError
from mesh_common.bounded import QUOTE_LIMIT, quote, quote_list, shorten
from mesh_common.figures import KIND_FIGURES, ROW_FIGURE_NAMES, TOTAL_FIGURE_NAMES
from mesh_common.views import SNAPSHOT_AGE_FIELD, View, make_view

SYSTEM = "system"
AGENT = "agent"
BUSINESS = "business"
HERO = "hero"
PRESENTATION = "presentation"
ALERTS = "alerts"
METRICS = "metrics"
ALL = "all"

METRIC_TYPES = (SYSTEM, AGENT, BUSINESS, HERO, PRESENTATION, ALERTS, METRICS)
"""Every subscription, by its canonical name."""
SYNONYMS = {"service": AGENT}
"""Other names of a metric type (the item then carries the name the client used)."""
ALL_TYPES = (SYSTEM, AGENT, BUSINESS, HERO, PRESENTATION, ALERTS)
"""What `all` subscribes to: seed 002's types and the alerts."""
TYPE_NAMES = (*METRIC_TYPES, *SYNONYMS, ALL)
"""Every name `metric_types` accepts."""
SEED_003_SUBSCRIPTIONS = {METRICS: METRICS, ALERTS: ALERTS}
"""Seed 003's `{"type": "subscribe", "data": {"subscription": ...}}` names -> metric types."""

SYSTEM_FIELDS = (*TOTAL_FIGURE_NAMES, SNAPSHOT_AGE_FIELD)
"""The figures of a `system` item: the kept services' totals and the snapshot's age."""
HERO_FIELDS = (
    "events_per_second",
    "active_count",
    "services_total",
    "error_rate",
    "latency_p99_ms",
    "alerts_firing",
)
"""The figures of the `hero` item."""
KIND_FIELDS = tuple(figure.name for figure in KIND_FIGURES)
"""The figures of one kind in a `business` item."""
KNOWN_FIELDS = tuple(dict.fromkeys((*ROW_FIGURE_NAMES, *SYSTEM_FIELDS, *HERO_FIELDS)))
"""The mesh's own figure names a `fields` filter accepts (the kinds' are among them)."""
SEED_FIELDS = {
    "throughput_tps": "events_per_second",
    "error_rate": "error_rate",
    "avg_response_time_ms": "latency_avg_ms",
    "p50_response_time_ms": "latency_p50_ms",
    "p95_response_time_ms": "latency_p95_ms",
    "p99_response_time_ms": "latency_p99_ms",
    "max_response_time_ms": "latency_max_ms",
    "requests_total": "total_events",
    "requests_failed": "total_errors",
}
"""Seed 002's figure names -> the row schema's."""
UNMAPPED_SEED_FIELDS = {
    "requests_successful": "no such figure in the mesh: it counts all and failed events "
    "(requests_total, requests_failed)",
    "timeout_rate": "no such figure in the mesh: timeouts count as failed events (error_rate)",
    "cpu_utilization": "no such figure in the mesh: cpu_usage_percent is a service's own "
    "process CPU, in % of one core",
    "memory_utilization": "no such figure in the mesh: it measures no memory",
    "network_throughput_mbps": "no such figure in the mesh: it measures no network traffic",
}
"""Seed 002's figure names the mesh has no figure for, and why."""

NAME_KEYS = ("agent_ids", "service_names")
"""The filters naming services (synonyms: seed 002's agents are the mesh's services)."""
FILTER_KEYS = (*NAME_KEYS, "service_types", "fields")
"""Every filter `set_filters` accepts."""
_SINGULAR = {
    "agent_ids": "agent_id",
    "service_names": "service_name",
    "service_types": "service_type",
}
"""How an ignored entry names a value of each name filter."""
MAX_IGNORED = 10
"""Ignored entries listed in one confirmation; `ignored_more` counts the rest."""

MESSAGE_TYPES = (
    "subscribe",
    "unsubscribe",
    "set_filters",
    "set_update_interval",
    "set_batching",
    "ping",
    "get_statistics",
)
"""Every message `type` a client may send."""


class Ignored:
    """What a message asked for that was left out, and why (bounded: `MAX_IGNORED` listed)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []
        self.more = 0
        """Entries beyond `MAX_IGNORED`, counted only."""
        self.service_named = False
        """True once a service name or type was ignored (listed or only counted)."""
        self._seen: set[tuple[str, str]] = set()

    def add(self, what: str, value: str, reason: str) -> None:
        """Record that `value` (of kind `what`, e.g. `field`) was ignored for `reason`, once."""
        if (what, value) in self._seen:
            return
        self._seen.add((what, value))
        if what in _SINGULAR.values():
            self.service_named = True
        if len(self.entries) >= MAX_IGNORED:
            self.more += 1
            return
        self.entries.append({what: shorten(value, QUOTE_LIMIT), "reason": reason})

    def json(self) -> dict[str, Any]:
        """`{"ignored": [...]}`, with `ignored_more` when some were not listed."""
        if self.more:
            return {"ignored": self.entries, "ignored_more": self.more}
        return {"ignored": self.entries}


def parse_message(text: str) -> dict[str, Any]:
    """A client message as an object with a known string `type`; ProtocolError otherwise.

    Whatever the text (deep nesting, bad UTF-8, huge numbers), the outcome is a message or
    a ProtocolError with a short text, never another exception.
    """
    try:
        message = orjson.loads(text)
    except (ValueError, RecursionError, TypeError, MemoryError) as error:
        raise ProtocolError(f"not JSON: {shorten(str(error), 120)}") from error
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    if message["type"] not in MESSAGE_TYPES:
        raise ProtocolError(
            f"unknown message type {quote(message['type'], 60)}; known: {', '.join(MESSAGE_TYPES)}"
        )
    return message


def names(value: Any, what: str) -> list[str]:
    """`value` as a list of strings; ProtocolError naming `what` otherwise."""
    if not isinstance(value, list) or not all(isinstance(each, str) for each in value):
        raise ProtocolError(f"{what} must be a list of strings")
    return value


def number(value: Any, what: str, low: float, high: float) -> float:
    """`value` as a finite number in `low..high`; ProtocolError naming `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{what} must be a number")
    if not low <= value <= high:
        raise ProtocolError(f"{what} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def canonical(name: str) -> str:
    """The canonical metric type of an accepted name (`service` -> `agent`)."""
    return SYNONYMS.get(name, name)


@dataclass(frozen=True, slots=True)
class TypesRequest:
    """What a subscribe or unsubscribe names: the accepted names as sent, in order."""

    names: tuple[str, ...]
    """Accepted names as the client sent them (duplicates dropped)."""
    subscription: str | None = None
    """Seed 003's `data.subscription` as sent, when the message used that form."""
    asked: tuple[str, ...] = ()
    """`metric_types` exactly as sent (unknown names and duplicates included): the echo.
    For seed 003's form, the metric type its subscription names."""

    def chosen(self) -> dict[str, str]:
        """Canonical metric type -> the name its items carry (`all` expanded)."""
        chosen: dict[str, str] = {}
        for name in self.names:
            if name == ALL:
                chosen.update((each, each) for each in ALL_TYPES)
            else:
                chosen[canonical(name)] = name
        return chosen


def types_request(message: Mapping[str, Any], ignored: Ignored) -> TypesRequest:
    """The metric types of a subscribe/unsubscribe; unknown names go to `ignored`.

    Seed 002's form names them in `metric_types`; seed 003's form is `"data":
    {"subscription": "metrics" | "alerts"}`. A message with neither, or with values of the
    wrong type, is a ProtocolError.
    """
    data = message.get("data")
    if "metric_types" not in message and isinstance(data, dict) and "subscription" in data:
        subscription = data["subscription"]
        if not isinstance(subscription, str):
            raise ProtocolError("data.subscription must be a string")
        if subscription not in SEED_003_SUBSCRIPTIONS:
            ignored.add(
                "subscription",
                subscription,
                f"unknown subscription; known: {', '.join(SEED_003_SUBSCRIPTIONS)}",
            )
            return TypesRequest((), subscription)
        metric_type = SEED_003_SUBSCRIPTIONS[subscription]
        return TypesRequest((metric_type,), subscription, (metric_type,))
    if "metric_types" not in message:
        raise ProtocolError(
            f'{message["type"]} needs "metric_types": [...] or "data": {{"subscription": ...}}'
        )
    sent = names(message["metric_types"], "metric_types")
    accepted: list[str] = []
    for name in dict.fromkeys(sent):
        if name in TYPE_NAMES:
            accepted.append(name)
        else:
            ignored.add("metric_type", name, f"unknown metric type; known: {', '.join(TYPE_NAMES)}")
    return TypesRequest(tuple(accepted), asked=tuple(sent))


@dataclass(frozen=True, slots=True)
class Filters:
    """A client's effective filters: service names and types, and the fields it reads."""

    names: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    fields: tuple[tuple[str, str], ...] = ()
    """(the name the client reads, the figure's name) pairs; empty: every figure."""
    view: View = field(default_factory=View)
    """The gateway's `View` of these filters (services, types, the row figures chosen)."""

    def applied(self) -> dict[str, list[str]]:
        """The filters in effect, as `filters_updated` reports them under `applied`."""
        return {
            "service_names": sorted(self.names),
            "service_types": sorted(self.types),
            "fields": [name for name, _ in self.fields],
        }


def filters_of(
    names: Iterable[str], types: Iterable[str], fields: Iterable[tuple[str, str]]
) -> Filters:
    """The Filters (and their View) of checked names, types and field pairs."""
    pairs = tuple(dict.fromkeys(fields))
    row_fields = [figure for _, figure in pairs if figure in ROW_FIGURE_NAMES]
    view = make_view(sorted(names), sorted(types), row_fields, known_services=None)
    return Filters(frozenset(names), frozenset(types), pairs, view)


def update_filters(
    filters: Mapping[str, Any],
    current: Filters,
    *,
    services: Iterable[str] | None,
    service_types: Iterable[str] | None,
    ignored: Ignored,
) -> Filters:
    """`current` changed by a `set_filters` message's `filters`; what is unknown goes to `ignored`.

    `services` and `service_types` are the known ones (the latest snapshot's; None before the
    first, when names cannot be checked yet). Each filter given replaces the current one; a
    filter of which every entry is ignored stays as it was; `[]` clears it.
    """
    for key in filters:
        if key not in FILTER_KEYS:
            ignored.add("filter", key, f"unknown filter; known: {', '.join(FILTER_KEYS)}")
    given = {key: names(filters[key], f"filters.{key}") for key in FILTER_KEYS if key in filters}
    new_names = current.names
    if any(key in given for key in NAME_KEYS):
        wanted = [(key, name) for key in NAME_KEYS for name in given.get(key, ())]
        new_names = _known_part(wanted, services, "service", current.names, ignored)
    new_types = current.types
    if "service_types" in given:
        wanted = [("service_types", name) for name in given["service_types"]]
        new_types = _known_part(wanted, service_types, "service type", current.types, ignored)
    new_fields = current.fields
    if "fields" in given:
        pairs = [pair for name in given["fields"] if (pair := _field(name, ignored))]
        if pairs or not given["fields"]:
            new_fields = tuple(pairs)
    return filters_of(new_names, new_types, new_fields)


def _known_part(
    wanted: list[tuple[str, str]],
    known: Iterable[str] | None,
    noun: str,
    current: frozenset[str],
    ignored: Ignored,
) -> frozenset[str]:
    """The known names of `wanted` ((filter key, name) pairs); `current` if none is known."""
    if known is None:
        return frozenset(name for _, name in wanted)
    known_set = set(known)
    kept = set()
    for key, name in wanted:
        if name in known_set:
            kept.add(name)
        else:
            ignored.add(
                _SINGULAR[key], name, f"no such {noun}; known: {quote_list(sorted(known_set), 400)}"
            )
    if not kept and wanted:
        return current
    return frozenset(kept)


def _field(name: str, ignored: Ignored) -> tuple[str, str] | None:
    """(name, figure) for an accepted field name; None (and an ignored entry) otherwise."""
    if name in SEED_FIELDS:
        return name, SEED_FIELDS[name]
    if name in KNOWN_FIELDS:
        return name, name
    reason = UNMAPPED_SEED_FIELDS.get(name)
    if reason is None:
        reason = (
            "unknown field; known: the row and total figures of GET /api/v1/schema, "
            f"snapshot_age_ms, alerts_firing, and seed 002's {', '.join(SEED_FIELDS)}"
        )
    ignored.add("field", name, reason)
    return None
