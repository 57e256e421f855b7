"""The bodies of seed 003's ingest and batch and of seed 004's events, and their answers.

Seed 003's metric is `{"name", "type": "gauge" | "counter", "value", "labels", "help_text",
"unit"}` (seed 003's own examples post exactly that), plus an optional `timestamp` (RFC 3339 /
ISO 8601 with a zone, or Unix seconds; none means when the aggregator receives it). Seed 004's
event is `{"event_type", "user_id", "metadata"}`, plus optional `service_name` (the pushed row
it counts for; none means the aggregator's `[ingest] default_service`, "metrics-service" by
default), `count`, `error`, `duration_ms` and `timestamp`. `user_id` and `metadata` are read
and not kept: the mesh counts events, it stores no per-user data.

The forms check the JSON's shape only (types, required keys); what a value may be (name syntax,
finite numbers, label counts and lengths, times not too old or ahead) is the aggregator's one
ingestion path's business (`Ingest`), which names the bound and its setting when it refuses.
`value` may be a number or a numeric string (`"NaN"`, `"+Inf"` as Prometheus writes them:
they reach the aggregator, which refuses them); a bare `NaN` is not JSON and is a 422 "not
JSON".
"""

from __future__ import annotations

from typing import Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from metricsmesh.v1 import ingest_pb2
from pydantic import BaseModel, ConfigDict, Field

from mesh_common.prometheus_api import parse_time

TYPES = {
    "gauge": ingest_pb2.PUSHED_METRIC_TYPE_GAUGE,
    "counter": ingest_pb2.PUSHED_METRIC_TYPE_COUNTER,
}
"""Seed 003's metric types -> the contract's."""
TYPE_NAMES = {value: key for key, value in TYPES.items()}

_STRICT = ConfigDict(extra="forbid")


class MetricForm(BaseModel):
    """One metric of seed 003 (POST /api/v1/metrics/ingest, an item of /batch)."""

    model_config = _STRICT

    name: str = Field(description="Prometheus metric name syntax, e.g. cpu_usage_percent.")
    type: Literal["gauge", "counter"] = Field(
        description="gauge: the latest value counts; counter: a running total (a drop is a reset)."
    )
    value: float = Field(
        description="The reading; a finite number (NaN and infinities are refused)."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Label name -> value (at most 32 by default)."
    )
    help_text: str = Field(default="", description="What the metric means (/metrics HELP).")
    unit: str = Field(default="", description="The unit, e.g. percent or seconds.")
    timestamp: str | float | None = Field(
        default=None,
        description="When the value was read: RFC 3339 / ISO 8601 with a zone, or Unix "
        "seconds; default when received. Older than 1 h or over 5 min ahead is refused.",
    )


class BatchForm(BaseModel):
    """Seed 003's batch: `{"metrics": [...]}`, at most 1000 metrics (`[ingest] max_batch`)."""

    model_config = _STRICT

    metrics: list[MetricForm]


class EventForm(BaseModel):
    """Seed 004's event (POST /metrics/events): one event of kind `event_type`."""

    model_config = _STRICT

    event_type: str = Field(description="The kind of event, e.g. user_login.")
    user_id: int | str | None = Field(default=None, description="Read, not kept.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Read, not kept.")
    service_name: str | None = Field(
        default=None,
        description="The pushed service the event counts for; default the aggregator's "
        "`[ingest] default_service` (metrics-service).",
    )
    count: int = Field(default=1, ge=1, le=1_000_000, description="How many such events.")
    error: bool = Field(default=False, description="True when the events failed.")
    duration_ms: float | None = Field(
        default=None, ge=0, description="How long each event took, when it was timed."
    )
    timestamp: str | float | None = Field(
        default=None, description="When it happened (as a metric's timestamp)."
    )


class Rejection(BaseModel):
    """One refused item: which, why, and the setting of the cap it hit (empty: a bad item)."""

    item: str = Field(description="`metric`, `metrics[3]` or `event`.")
    reason: str
    limit: str = Field(description="The aggregator's `[ingest]` setting, e.g. max_labels.")


class IngestAnswer(BaseModel):
    """What was kept and what was refused: 201 when everything was kept, else 422.

    Every item listed in `kept` is stored (a 422 batch keeps its good items); every item in
    `rejected` is not.
    """

    accepted: int = Field(description="How many items were kept.")
    kept: list[str] = Field(description="The items kept, e.g. metrics[0].")
    rejected: list[Rejection] = Field(description="The items refused, with their reason.")
    detail: str | None = Field(default=None, description="On a 422: a summary of the refusals.")
    metric: MetricForm | None = Field(
        default=None, description="POST /ingest: the metric as kept (absent when refused)."
    )


class EventAnswer(BaseModel):
    """The answer to POST /metrics/events (201)."""

    accepted: int
    service_name: str | None = Field(
        description="The pushed row the event was counted for; null: the aggregator's "
        "`[ingest] default_service` (metrics-service unless configured otherwise)."
    )
    event_type: str
    count: int


class IngestError(BaseModel):
    """An error body: what is wrong, and the field at fault when there is one."""

    detail: str
    field: str | None = None


def metric_message(form: MetricForm) -> ingest_pb2.PushedMetric:
    """The contract's PushedMetric of a checked form (ParamError for an unreadable timestamp)."""
    message = ingest_pb2.PushedMetric(
        name=form.name,
        type=TYPES[form.type],
        value=form.value,
        labels=form.labels,
        help_text=form.help_text,
        unit=form.unit,
    )
    if form.timestamp is not None:
        message.time.CopyFrom(_timestamp(form.timestamp))
    return message


_FAST_KEYS = frozenset({"name", "type", "value", "labels", "help_text", "unit"})


def add_metric(request: ingest_pb2.IngestRequest, item: Any) -> None:
    """Append `item` (one metric of a body, as parsed) to `request`'s metrics.

    Raises pydantic's ValidationError (or ParamError for its timestamp) when the item is not a
    `MetricForm`. A plain item (only `MetricForm`'s keys without `timestamp`, strings where it
    wants strings, a JSON number as `value`) skips the model: checking 1000 of them by hand
    and building the messages straight from the dicts took a third of the time of
    `model_validate` + `metric_message` (bench/bench_ingest_batch.py). Anything else goes
    through the model, which accepts a superset of these and says what is wrong.
    """
    if type(item) is dict and item.keys() <= _FAST_KEYS:
        name, kind, value = item.get("name"), item.get("type"), item.get("value")
        labels = item.get("labels", _NO_LABELS)
        help_text, unit = item.get("help_text", ""), item.get("unit", "")
        if (
            type(name) is str
            and kind in TYPES
            and type(value) in (float, int)
            and type(labels) is dict
            and type(help_text) is str
            and type(unit) is str
            and all(type(k) is str and type(v) is str for k, v in labels.items())
        ):
            request.metrics.add(
                name=name,
                type=TYPES[kind],
                value=value,
                labels=labels,
                help_text=help_text,
                unit=unit,
            )
            return
    request.metrics.append(metric_message(MetricForm.model_validate(item)))


_NO_LABELS: dict[str, str] = {}


def event_message(form: EventForm) -> ingest_pb2.PushedEvent:
    """The contract's PushedEvent of a checked form (ParamError for an unreadable timestamp)."""
    message = ingest_pb2.PushedEvent(
        service_name=form.service_name or "",
        kind=form.event_type,
        count=form.count,
        errors=form.count if form.error else 0,
    )
    if form.duration_ms is not None:
        message.duration.FromNanoseconds(round(form.duration_ms * 1e6))
    if form.timestamp is not None:
        message.time.CopyFrom(_timestamp(form.timestamp))
    return message


def _timestamp(value: str | float) -> Timestamp:
    text = value if isinstance(value, str) else repr(value)
    stamp = Timestamp()
    stamp.FromMilliseconds(parse_time("timestamp", text))
    return stamp


def metric_json(form: MetricForm) -> dict[str, Any]:
    """The metric as seed 003 wrote it, for an answer."""
    return form.model_dump(exclude_none=True)
