"""Encoding of samples, column by column: chunks (zlib), head rows and cursors. No I/O.

A column of integers is stored as one typecode byte and the `array` bytes of the narrowest
machine type that holds every value (1, 2, 4 or 8 bytes, signed when a value is negative), in
little-endian order. Times are stored as deltas from the previous sample's (a chunk's first as
a delta from its base time), bucket indexes as deltas from the previous index (positions
restore by a running sum), a maximum as `max_ns + 1` (0 is "no timed event"). A chunk is its
header and columns compressed with zlib; a head row (one round, every series) is not
compressed; a cursor is one column.

Why arrays: a round's columns are built and narrowed at C speed (`array(typecode, values)`,
`min`/`max` over them) instead of one varint or `struct.pack` call per number; at 1000
services that is the difference between a few milliseconds and tens per round
(bench/bench_history.py, `writer`).

The in-memory open chunk of a series is the same columns (`KindColumns`, `ServiceColumns`):
about 10 bytes per number instead of a tuple per sample, and sealing it is narrowing + zlib.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain
from operator import sub

from aggregator._errors import HistoryStoreError
from aggregator._history.model import Cursor, KindSample, ServiceSample
from mesh_common.status import ServiceStatus

VERSION = 2
"""The encoding's version: the first byte of every chunk and head row. Version 1 (read, no
longer written) had no `answered` column in a service series: it reads as 0 there."""
_READABLE = (1, VERSION)
ZLIB_LEVEL = 6
"""zlib's default: level 9 saves under 1 % more on chunks and costs twice the time."""

_UNSIGNED = (("B", 0xFF), ("H", 0xFFFF), ("I", 0xFFFF_FFFF), ("Q", 0xFFFF_FFFF_FFFF_FFFF))
_SIGNED = (("b", 0x7F), ("h", 0x7FFF), ("i", 0x7FFF_FFFF), ("q", 0x7FFF_FFFF_FFFF_FFFF))
_BIG_ENDIAN = sys.byteorder == "big"
_CHUNK_HEADER = struct.Struct("<BcIq")  # version, series type, samples, base time
_HEAD_HEADER = struct.Struct("<BII")  # version, kind samples, service samples
STATUS_CODES = {status: code for code, status in enumerate(ServiceStatus)}
"""The code of each status in a status column."""
STATUSES = tuple(ServiceStatus)
"""The statuses by their code in a status column."""
for _code, _limit in (*_UNSIGNED, *_SIGNED):
    if array(_code).itemsize * 8 < _limit.bit_length():
        raise ImportError(f"array typecode {_code!r} is too small here")
_UNSIGNED_BY_BITS, _SIGNED_BY_BITS = (
    tuple(
        next(code for code, limit in choices if limit.bit_length() >= bits)
        for bits in range(choices[-1][1].bit_length() + 1)
    )
    for choices in (_UNSIGNED, _SIGNED)
)
"""The narrowest typecode per bit length of a column's bound: a lookup, not a search per
column (a seal packs thousands of columns: bench/bench_history.py, `writer`)."""


def pack_ints(values: Sequence[int]) -> bytes:
    """One column: a typecode byte, then the values in the narrowest type that holds them all."""
    if not values:
        return b"B"
    low, high = min(values), max(values)
    if low < 0:
        bound, codes = max(high, -low - 1), _SIGNED_BY_BITS
    else:
        bound, codes = high, _UNSIGNED_BY_BITS
    if bound.bit_length() >= len(codes):
        raise OverflowError(f"a value of {bound} does not fit in 64 bits")
    code = codes[bound.bit_length()]
    if isinstance(values, array) and values.typecode == code:
        column = values
    else:
        column = array(code, values)
    if _BIG_ENDIAN:
        column = array(code, column)
        column.byteswap()
    return code.encode() + column.tobytes()


class _Columns:
    """Reads columns back from bytes, in order."""

    def __init__(self, data: bytes | memoryview, position: int = 0) -> None:
        self._data = memoryview(data)
        self._position = position

    def ints(self, count: int) -> array[int]:
        """The next column of `count` values."""
        data, position = self._data, self._position
        try:
            column = array(chr(data[position]))
        except (IndexError, ValueError) as error:
            raise HistoryStoreError(f"a stored column is damaged: {error}") from None
        end = position + 1 + count * column.itemsize
        if end > len(data):
            raise HistoryStoreError("a stored column is shorter than its samples say")
        column.frombytes(data[position + 1 : end])
        if _BIG_ENDIAN:
            column.byteswap()
        self._position = end
        return column

    def skip(self, count: int) -> None:
        """Pass over the next column of `count` values."""
        data, position = self._data, self._position
        if position >= len(data):
            raise HistoryStoreError("a stored column is shorter than its samples say")
        try:
            size = array(chr(data[position])).itemsize
        except ValueError as error:
            raise HistoryStoreError(f"a stored column is damaged: {error}") from None
        end = position + 1 + count * size
        if end > len(data):
            raise HistoryStoreError("a stored column is shorter than its samples say")
        self._position = end

    @property
    def done(self) -> bool:
        """True when every byte was read."""
        return self._position == len(self._data)


def _times(reader: _Columns, count: int, base_ms: int, stored: bool) -> array[int]:
    """The times column: stored as deltas from `base_ms`, or all `base_ms`."""
    if not stored:
        return array("q", [base_ms]) * count
    return array("q", accumulate(reader.ints(count), initial=base_ms))[1:]


def _deltas(values: Sequence[int], first: int) -> list[int]:
    """Each value minus the one before it (the first minus `first`)."""
    return [values[0] - first, *map(sub, values[1:], values[:-1])] if values else []


class KindColumns:
    """A kind series' samples as columns (an open chunk); `append` one, `samples()` them all."""

    __slots__ = ("counts", "errors", "events", "indexes", "maxes", "pairs", "sums", "times")

    def __init__(self) -> None:
        self.times = array("q")
        self.events = array("Q")
        self.errors = array("Q")
        self.pairs = array("I")
        self.indexes = array("h")
        self.counts = array("Q")
        self.sums = array("Q")
        self.maxes = array("Q")

    def __len__(self) -> int:
        return len(self.times)

    def append(self, sample: KindSample) -> None:
        """Add `sample` (later than every sample already in)."""
        self.times.append(sample.time_ms)
        self.events.append(sample.events)
        self.errors.append(sample.errors)
        self.pairs.append(len(sample.bucket_indexes))
        self.indexes.extend(sample.bucket_indexes)
        self.counts.extend(sample.bucket_counts)
        self.sums.append(sample.latency_sum_ns)
        self.maxes.append(0 if sample.latency_max_ns is None else sample.latency_max_ns + 1)

    @classmethod
    def of(cls, samples: Sequence[KindSample]) -> KindColumns:
        """The columns of `samples`, built column by column (a round's head row: thousands)."""
        columns = cls()
        columns.times = array("q", [sample.time_ms for sample in samples])
        columns.events = array("Q", [sample.events for sample in samples])
        columns.errors = array("Q", [sample.errors for sample in samples])
        columns.pairs = array("I", [len(sample.bucket_indexes) for sample in samples])
        columns.indexes = array("h", chain.from_iterable(s.bucket_indexes for s in samples))
        columns.counts = array("Q", chain.from_iterable(s.bucket_counts for s in samples))
        columns.sums = array("Q", [sample.latency_sum_ns for sample in samples])
        maxes = [sample.latency_max_ns for sample in samples]
        columns.maxes = array("Q", [0 if top is None else top + 1 for top in maxes])
        return columns

    def slice(self, start: int, stop: int) -> KindColumns:
        """A copy of samples `start` to `stop` (positions, as list slicing)."""
        start, stop, _ = slice(start, stop).indices(len(self.times))
        pairs_before = sum(self.pairs[:start])
        pairs_end = pairs_before + sum(self.pairs[start:stop])
        part = KindColumns()
        for name in ("times", "events", "errors", "pairs", "sums", "maxes"):
            setattr(part, name, getattr(self, name)[start:stop])
        part.indexes = self.indexes[pairs_before:pairs_end]
        part.counts = self.counts[pairs_before:pairs_end]
        return part

    def without_buckets(self) -> KindColumns:
        """The samples without their buckets (`pairs` all 0), sharing the other columns."""
        bare = KindColumns()
        for name in ("times", "events", "errors", "sums", "maxes"):
            setattr(bare, name, getattr(self, name))
        bare.pairs = array("I", bytes(4 * len(self.times)))
        return bare

    def samples(self) -> list[KindSample]:
        """Every sample, oldest first."""
        result = []
        at = 0
        indexes, counts = self.indexes, self.counts
        for time, events, errors, pairs, total, top in zip(
            self.times, self.events, self.errors, self.pairs, self.sums, self.maxes, strict=True
        ):
            end = at + pairs
            result.append(
                KindSample(
                    time,
                    events,
                    errors,
                    tuple(indexes[at:end]),
                    tuple(counts[at:end]),
                    total,
                    top - 1 if top else None,
                )
            )
            at = end
        return result

    def encode(self, times: bool = True) -> bytes:
        """The columns as bytes (not compressed): a chunk's body (a head row's: no times)."""
        return b"".join(
            (
                pack_ints(_deltas(self.times, self.times[0] if self.times else 0))
                if times
                else b"",
                pack_ints(self.events),
                pack_ints(self.errors),
                pack_ints(self.pairs),
                pack_ints(_deltas(self.indexes, 0)),
                pack_ints(self.counts),
                pack_ints(self.sums),
                pack_ints(self.maxes),
            )
        )

    @classmethod
    def decode(
        cls,
        reader: _Columns,
        count: int,
        base_ms: int,
        times: bool = True,
        buckets: bool = True,
    ) -> KindColumns:
        """Columns of `count` samples read from `reader` (as `encode` wrote them).

        Without `times`, every sample is at `base_ms`. Without `buckets`, the samples have no
        buckets (`pairs` all 0): what a figure that reads none needs, without the cost of
        restoring them (most of a chunk's numbers: bench/bench_history_query.py).
        """
        columns = cls()
        columns.times = _times(reader, count, base_ms, times)
        columns.events = reader.ints(count)
        columns.errors = reader.ints(count)
        pairs = reader.ints(count)
        total = sum(pairs)
        if buckets:
            columns.pairs = pairs
            columns.indexes = array("h", accumulate(reader.ints(total)))
            columns.counts = reader.ints(total)
        else:
            columns.pairs = array("I", bytes(4 * count))
            reader.skip(total)
            reader.skip(total)
        columns.sums = reader.ints(count)
        columns.maxes = reader.ints(count)
        return columns


ServiceRow = tuple[int, int, int, int, int, int, int, int]
"""A service sample's values but its time, in `ServiceColumns.VALUES` order (status as its
code): how a round hands its service samples over, without a named tuple per service."""


class ServiceColumns:
    """A service series' samples as columns (an open chunk), or a round's (one per service)."""

    VALUES = (
        "rounds", "active", "status", "calls", "call_ns", "cpu_milli", "cpu_count", "answered"
    )  # fmt: skip
    """The columns of a `ServiceRow`, in its order."""

    __slots__ = (
        "active",
        "answered",
        "call_ns",
        "calls",
        "cpu_count",
        "cpu_milli",
        "rounds",
        "status",
        "times",
    )

    def __init__(self) -> None:
        self.times = array("q")
        self.rounds = array("Q")
        self.active = array("Q")
        self.status = array("B")
        self.calls = array("Q")
        self.call_ns = array("Q")
        self.cpu_milli = array("Q")
        self.cpu_count = array("Q")
        self.answered = array("Q")

    def __len__(self) -> int:
        return len(self.times)

    def append(self, sample: ServiceSample) -> None:
        """Add `sample` (later than every sample already in)."""
        self.times.append(sample.time_ms)
        self.rounds.append(sample.rounds)
        self.active.append(sample.active_rounds)
        self.status.append(STATUS_CODES[sample.status])
        self.calls.append(sample.calls)
        self.call_ns.append(sample.call_ns)
        self.cpu_milli.append(sample.cpu_milli)
        self.cpu_count.append(sample.cpu_count)
        self.answered.append(sample.answered)

    def append_row(self, time_ms: int, row: ServiceRow) -> None:
        """Add the sample of `row` at `time_ms` (later than every sample already in)."""
        self.times.append(time_ms)
        self.rounds.append(row[0])
        self.active.append(row[1])
        self.status.append(row[2])
        self.calls.append(row[3])
        self.call_ns.append(row[4])
        self.cpu_milli.append(row[5])
        self.cpu_count.append(row[6])
        self.answered.append(row[7])

    @classmethod
    def of_rows(cls, time_ms: int, rows: Sequence[ServiceRow]) -> ServiceColumns:
        """The columns of one round's `rows` (all at `time_ms`), built column by column."""
        columns = cls()
        columns.times = array("q", [time_ms]) * len(rows)
        if rows:
            for name, values in zip(cls.VALUES, zip(*rows, strict=True), strict=True):
                setattr(columns, name, array(getattr(columns, name).typecode, values))
        return columns

    def slice(self, start: int, stop: int) -> ServiceColumns:
        """A copy of samples `start` to `stop` (positions, as list slicing)."""
        part = ServiceColumns()
        for name in self.__slots__:
            setattr(part, name, getattr(self, name)[start:stop])
        return part

    def samples(self) -> list[ServiceSample]:
        """Every sample, oldest first."""
        return [
            ServiceSample(time, rounds, active, STATUSES[status], calls, call_ns, cpu, cpus, seen)
            for time, rounds, active, status, calls, call_ns, cpu, cpus, seen in zip(
                self.times,
                self.rounds,
                self.active,
                self.status,
                self.calls,
                self.call_ns,
                self.cpu_milli,
                self.cpu_count,
                self.answered,
                strict=True,
            )
        ]

    def encode(self, times: bool = True) -> bytes:
        """The columns as bytes (not compressed): a chunk's body (a head row's: no times)."""
        first = self.times[0] if self.times else 0
        return (pack_ints(_deltas(self.times, first)) if times else b"") + b"".join(
            pack_ints(column)
            for column in (
                self.rounds,
                self.active,
                self.status,
                self.calls,
                self.call_ns,
                self.cpu_milli,
                self.cpu_count,
                self.answered,
            )
        )

    @classmethod
    def decode(
        cls, reader: _Columns, count: int, base_ms: int, times: bool = True, version: int = VERSION
    ) -> ServiceColumns:
        """Columns of `count` samples read from `reader` (as `encode` wrote them).

        Without `times`, every sample is at `base_ms`; before version 2, `answered` is 0.
        """
        columns = cls()
        columns.times = _times(reader, count, base_ms, times)
        for name in ("rounds", "active", "status", "calls", "call_ns", "cpu_milli", "cpu_count"):
            setattr(columns, name, reader.ints(count))
        columns.answered = reader.ints(count) if version > 1 else array("B", bytes(count))
        return columns


Columns = KindColumns | ServiceColumns
"""An open chunk of either series type."""


def between(columns: Columns, start_ms: int, end_ms: int) -> Columns:
    """A copy of the samples of `columns` whose time falls in `(start_ms, end_ms]`."""
    times = columns.times
    return columns.slice(bisect_right(times, start_ms), bisect_right(times, end_ms))


def columns_of(samples: Iterable[KindSample] | Iterable[ServiceSample], service: bool) -> Columns:
    """The columns holding `samples` (of a service series when `service`)."""
    columns: Columns = ServiceColumns() if service else KindColumns()
    for sample in samples:
        columns.append(sample)  # type: ignore[arg-type]
    return columns


def encode_chunk(columns: Columns) -> bytes:
    """A chunk: the header (type, sample count, first time) and the columns, zlib-compressed."""
    kind = b"S" if isinstance(columns, ServiceColumns) else b"K"
    header = _CHUNK_HEADER.pack(VERSION, kind, len(columns), columns.times[0])
    return zlib.compress(header + columns.encode(), ZLIB_LEVEL)


def joined(parts: Sequence[Columns]) -> Columns:
    """The samples of `parts` (one series' columns, in time order) in one columns object.

    One part is returned as it is (never changed by a reader).
    """
    if len(parts) == 1:
        return parts[0]
    whole = type(parts[0])()
    for name in whole.__slots__:
        wide = getattr(whole, name).typecode  # a decoded column may be narrower
        setattr(whole, name, array(wide, chain.from_iterable(getattr(p, name) for p in parts)))
    return whole


def decode_chunk(data: bytes, buckets: bool = True) -> Columns:
    """The columns of a chunk written by `encode_chunk`; HistoryStoreError when damaged.

    Without `buckets`, a kind chunk's samples come without their buckets (`KindColumns.decode`).
    """
    try:
        raw = zlib.decompress(data)
        version, kind, count, base = _CHUNK_HEADER.unpack_from(raw)
    except (zlib.error, struct.error) as error:
        raise HistoryStoreError(f"a stored chunk is damaged: {error}") from None
    if version not in _READABLE or kind not in (b"K", b"S"):
        raise HistoryStoreError(f"a stored chunk has version {version}, type {kind!r}")
    reader = _Columns(raw, _CHUNK_HEADER.size)
    columns: Columns
    if kind == b"K":
        columns = KindColumns.decode(reader, count, base, buckets=buckets)
    else:
        columns = ServiceColumns.decode(reader, count, base, version=version)
    if not reader.done:
        raise HistoryStoreError("a stored chunk has bytes after its columns")
    return columns


def encode_head(
    kind_ids: Sequence[int],
    kinds: Sequence[KindSample],
    resets: Sequence[bool],
    service_ids: Sequence[int],
    services: ServiceColumns,
    lifetimes: Sequence[int],
) -> bytes:
    """One round's samples of every series (parallel: ids and samples) as a head row.

    The row's time is its key. Kind samples carry their reset flag and each service its
    lifetime (`lifetimes`, 0 when it did not answer), so a restart rebuilds the cursors. The
    samples' times are not stored: they are the round's.
    """
    return b"".join(
        (
            _HEAD_HEADER.pack(VERSION, len(kinds), len(services)),
            pack_ints(kind_ids),
            KindColumns.of(kinds).encode(times=False),
            pack_ints([int(reset) for reset in resets]),
            pack_ints(service_ids),
            services.encode(times=False),
            pack_ints(lifetimes),
        )
    )


def decode_head(
    time_ms: int, data: bytes
) -> tuple[list[tuple[int, KindSample, bool]], list[tuple[int, ServiceSample, int]]]:
    """A head row's samples: (series, sample, reset) per kind, (series, sample, lifetime)."""
    try:
        version, kind_count, service_count = _HEAD_HEADER.unpack_from(data)
    except struct.error as error:
        raise HistoryStoreError(f"a stored head row is damaged: {error}") from None
    if version not in _READABLE:
        raise HistoryStoreError(f"a stored head row has version {version}")
    reader = _Columns(data, _HEAD_HEADER.size)
    kind_ids = reader.ints(kind_count)
    kinds = KindColumns.decode(reader, kind_count, time_ms, times=False).samples()
    resets = reader.ints(kind_count)
    service_ids = reader.ints(service_count)
    services = ServiceColumns.decode(
        reader, service_count, time_ms, times=False, version=version
    ).samples()
    lifetimes = reader.ints(service_count)
    if not reader.done:
        raise HistoryStoreError("a stored head row has bytes after its columns")
    return (
        [
            (series, sample, bool(reset))
            for series, sample, reset in zip(kind_ids, kinds, resets, strict=True)
        ],
        list(zip(service_ids, services, lifetimes, strict=True)),
    )


def encode_cursor(cursor: Cursor) -> bytes:
    """A cursor as one column."""
    return pack_ints(
        [
            cursor.lifetime_ns,
            cursor.events,
            cursor.errors,
            cursor.latency_sum_ns,
            cursor.bucket_offset,
            *cursor.bucket_counts,
        ]
    )


def decode_cursor(data: bytes) -> Cursor:
    """The cursor `encode_cursor` wrote."""
    if not data:
        raise HistoryStoreError("a stored cursor is empty")
    size = array(chr(data[0])).itemsize
    values = _Columns(data).ints((len(data) - 1) // size)
    if len(values) < 5:
        raise HistoryStoreError("a stored cursor is damaged")
    lifetime, events, errors, total, offset = values[:5]
    return Cursor(lifetime, events, errors, offset, tuple(values[5:]), total)
