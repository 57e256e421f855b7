"""Decoded chunks kept for the next read: a range query asked again decodes nothing twice.

A chunk's content is fixed by `(store generation, tier, series, start, samples)`: a final
chunk never changes, and a partial one rewritten at a checkpoint only gains samples, so its
new version has another key (the old one ages out). Decoding (zlib, then the columns) is most
of a warm query's read: the 60 chunks of a 90-day answer's first and last windows cost tens of
milliseconds each time (bench/bench_history_query.py). At most `MAX_BYTES` of columns are kept
(their arrays' bytes), the least recently used first out; a chunk decoded with its buckets
also answers a read without them. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from aggregator._history.codec import Columns

MAX_BYTES = 32 * 1024 * 1024
"""The most bytes of decoded columns kept (their arrays' buffers)."""


def columns_bytes(columns: Columns) -> int:
    """What the arrays of `columns` take."""
    return sum(
        len(column) * column.itemsize for column in map(columns.__getattribute__, columns.__slots__)
    )


class DecodedChunks:
    """Decoded chunks by key, with or without their buckets (see the module doc)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[Hashable, bool], tuple[Columns, int]] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes

    def get(self, key: Hashable, buckets: bool) -> Columns | None:
        """The columns kept for `key` (with its buckets when `buckets`), or None."""
        with self._lock:
            for wanted in (True,) if buckets else (False, True):
                found = self._kept.get((key, wanted))
                if found is not None:
                    self._kept.move_to_end((key, wanted))
                    return found[0]
            return None

    def put(self, key: Hashable, buckets: bool, columns: Columns) -> None:
        """Keep `columns`, decoded from the chunk `key` (with its buckets when `buckets`)."""
        size = columns_bytes(columns)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._kept.pop((key, buckets), None)
            if old is not None:
                self._bytes -= old[1]
            self._kept[key, buckets] = (columns, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._kept.popitem(last=False)
                self._bytes -= dropped
