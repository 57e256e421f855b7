"""Reading pushed series for the REST answers: the latest values of a pushed metric.

`pushed_latest` asks the aggregator's ListPushed for one metric name and answers each label
set's latest value in the shape of seed 003's `latest` answer (`source` pushed). A failed call
(unreachable, `[ingest] enabled = false`) answers nothing: the caller still has the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metricsmesh.v1 import ingest_pb2

from gateway._errors import IngestCallError
from gateway._ingest_calls import call_ingest
from gateway._ingest_forms import TYPE_NAMES
from gateway._state import GatewayState
from mesh_common.wire_time import iso_utc, to_seconds


async def pushed_latest(
    state: GatewayState, name: str, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The latest value of each series of `name` whose labels have `labels`' values.

    A pushed series of a pushed service (OTLP) matches `service` by its service name too.
    """
    try:
        response = await call_ingest(state, "ListPushed", ingest_pb2.ListPushedRequest(name=name))
    except IngestCallError:
        return []
    values = []
    for value in response.values:
        if not all(_has(value, label, wanted) for label, wanted in labels.items()):
            continue
        values.append(
            {
                "labels": dict(value.labels),
                "value": value.value,
                "timestamp": iso_utc(to_seconds(value.time)),
                "tier": None,
                "source": "pushed",
                "type": TYPE_NAMES.get(value.type, "gauge"),
                "help_text": value.help_text,
                "unit": value.unit,
            }
        )
    return values


def _has(value: ingest_pb2.PushedValue, label: str, wanted: str) -> bool:
    if value.labels.get(label) == wanted:
        return True
    return label == "service" and value.service_name == wanted
