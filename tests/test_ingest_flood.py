"""A flood of new series never grows the aggregator's memory past the stated caps.

One million distinct label sets are pushed through the ingestion path against `max_series`
10,000, in a fresh process whose resident memory is read from /proc before and after. The
10,000 series held cost about 0.8 KB each (`python -m bench ingest_memory`); the 990,000
refused ones must cost nothing that stays.
"""

from __future__ import annotations

import json
import subprocess
import sys

FLOOD = """
import gc, json
from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.model import MetricPoint, MetricType
from aggregator._ingest.settings import IngestSettings
from mesh_common.clocks import Clocks

def rss():
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

clocks = Clocks(monotonic=lambda: 1000.0, wall=lambda: 1_800_000_000.0)
ingestor = Ingestor(IngestSettings(otlp_port=-1, max_series=10_000), clocks)
ingestor.ingest([MetricPoint("warm", MetricType.GAUGE, 1.0, {"a": "b"})])
before = rss()
limits = set()
for start in range(0, 1_000_000, 1000):
    result = ingestor.ingest([
        MetricPoint("requests_in_flight", MetricType.GAUGE, 1.0,
                    {"host": f"server{i:07d}", "instance": f"i-{i:08x}"})
        for i in range(start, start + 1000)
    ])
    limits.update(refusal.limit for refusal in result.refused)
print(json.dumps({
    "grown": rss() - before,
    "held": ingestor.series.count,
    "refused": sum(ingestor.refused_total.values()),
    "limits": sorted(limits),
}))
"""
HELD = 10_000
ALLOWED_BYTES = HELD * 2048 + 8 * 2**20
"""The cap's worth at the 2 KB per series target, and 8 MiB for the allocator's arenas."""


def test_a_million_new_label_sets_stay_within_the_caps() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FLOOD], capture_output=True, text=True, timeout=300, check=True
    )
    figures = json.loads(done.stdout)
    assert figures["held"] == HELD  # the warm-up series and 9,999 of the flood's
    assert figures["refused"] == 1_000_000 - (HELD - 1)
    assert figures["limits"] == ["max_series"]
    assert figures["grown"] <= ALLOWED_BYTES, f"RSS grew {figures['grown']} bytes"
