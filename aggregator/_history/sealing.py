"""Sealing, planned purely: the open samples and the tiers' progress in, chunks and new state out.

`plan_seal(state, upto_ms)` seals the finest tier's samples up to `upto_ms` (the end of a chunk
span) into one chunk per series and span, rolls them up into each coarser tier as far as they
complete it (`complete_ms`: the last multiple of its resolution at or before `upto_ms`), and
cuts each coarser tier's final chunks (spans that are complete) and, every `CHECKPOINT_MS` of
progress, its partial chunks (the span in progress, rewritten), so a restart rolls up at most
that much again from the finer tier's chunks (`recovery.py`). Nothing is changed: the writer
stores the plan's chunks in one transaction, and only then swaps in the plan's open samples
and progress, so a failed seal leaves everything as it was.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from aggregator._history.codec import Columns, between, encode_chunk
from aggregator._history.memory import NEVER
from aggregator._history.model import ChunkRecord, Tier
from aggregator._history.samples import rollup_columns
from aggregator._history.tiers import aligned_below, bucket_end

CHECKPOINT_MS = 600_000
"""A coarse tier's partial chunks are rewritten once per ten minutes of its progress (at
1000 services, rewriting them at every seal cost more than sealing itself:
bench/bench_history.py, `writer`); a restart rolls up at most this much again."""


def checkpoint_interval(tiers: tuple[Tier, ...], index: int) -> int:
    """How much progress of tier `index` may wait before its partial chunks are rewritten.

    Never more than half the finer tier's retention, whose chunks a restart rolls up again.
    """
    return max(tiers[index].resolution_ms, min(CHECKPOINT_MS, tiers[index - 1].retention_ms // 2))


@dataclass(frozen=True, slots=True)
class SealState:
    """The open samples per tier and series, and each tier's progress (`memory.OpenChunks`)."""

    tiers: tuple[Tier, ...]
    open: list[dict[int, Columns]]
    sealed_ms: list[int]
    complete_ms: list[int]
    checkpoint_ms: list[int]
    """How far each coarse tier's stored chunks (partial ones included) reach."""


@dataclass(frozen=True, slots=True)
class SealPlan:
    """The chunks to store and the state once they are stored."""

    chunks: list[ChunkRecord]
    state: SealState


def spans(columns: Columns, span_ms: int) -> list[Columns]:
    """`columns` cut into the aligned chunk spans `(S, S + span]` its samples fall in."""
    times = columns.times
    if not times:
        return []
    parts = []
    start = 0
    end = bucket_end(times[0], span_ms)
    while start < len(times):
        stop = bisect_right(times, end, lo=start)
        if stop > start:
            parts.append(columns.slice(start, stop))
        start = stop
        end += span_ms
    return parts


def chunk_record(tier: Tier, series: int, columns: Columns) -> ChunkRecord:
    """The stored form of one chunk of `columns` (non-empty, within one span)."""
    times = columns.times
    return ChunkRecord(tier.key, series, times[0], times[-1], len(times), encode_chunk(columns))


def plan_seal(state: SealState, upto_ms: int) -> SealPlan:
    """Seal the finest tier up to `upto_ms` and roll it up as far as it completes the others."""
    tiers = state.tiers
    chunks: list[ChunkRecord] = []
    opened: list[dict[int, Columns]] = [dict(tier_open) for tier_open in state.open]
    sealed = list(state.sealed_ms)
    complete = list(state.complete_ms)
    checkpoint = list(state.checkpoint_ms)
    finest = tiers[0]
    for series, columns in state.open[0].items():
        cut = bisect_right(columns.times, upto_ms)
        for part in spans(columns.slice(0, cut), finest.chunk_ms):
            chunks.append(chunk_record(finest, series, part))
        if cut < len(columns):
            opened[0][series] = columns.slice(cut, len(columns))
        else:
            del opened[0][series]
    sealed[0] = max(sealed[0], upto_ms)
    for index in range(1, len(tiers)):  # every roll-up first: a tier reads the finer's open
        finer = state.open[0] if index == 1 else opened[index - 1]
        _roll(tiers[index], opened[index], finer, complete, index, upto_ms)
    for index in range(1, len(tiers)):
        due = complete[index] - checkpoint[index] >= checkpoint_interval(tiers, index)
        chunks += _cut(tiers[index], opened[index], sealed, checkpoint, complete[index], index, due)
    return SealPlan(chunks, SealState(tiers, opened, sealed, complete, checkpoint))


def _roll(
    tier: Tier,
    tier_open: dict[int, Columns],
    finer: dict[int, Columns],
    complete: list[int],
    index: int,
    upto_ms: int,
) -> None:
    """Roll `finer` up into `tier_open` as far as `upto_ms` completes tier `index`."""
    target = aligned_below(upto_ms, tier.resolution_ms)
    if target <= complete[index]:
        return
    for series, columns in finer.items():
        rolled = rollup_columns(between(columns, complete[index], target), tier.resolution_ms)
        if rolled.times:
            tier_open[series] = _joined(tier_open.get(series), rolled)
    complete[index] = target


def _cut(
    tier: Tier,
    tier_open: dict[int, Columns],
    sealed: list[int],
    checkpoint: list[int],
    complete_ms: int,
    index: int,
    due: bool,
) -> list[ChunkRecord]:
    """Final chunks of the spans `complete_ms` completes; partial ones when a checkpoint is due.

    A partial chunk is written for each series with samples newer than the last checkpoint.
    """
    final = aligned_below(complete_ms, tier.chunk_ms) if complete_ms > NEVER else NEVER
    chunks = []
    for series in list(tier_open):
        columns = tier_open[series]
        cut = bisect_right(columns.times, final) if final > sealed[index] else 0
        for part in spans(columns.slice(0, cut), tier.chunk_ms):
            chunks.append(chunk_record(tier, series, part))
        rest = columns.slice(cut, len(columns)) if cut else columns
        if rest.times:
            tier_open[series] = rest
            if due and rest.times[-1] > checkpoint[index]:
                chunks.append(chunk_record(tier, series, rest))
        else:
            del tier_open[series]
    if final > sealed[index]:
        sealed[index] = final
    checkpoint[index] = complete_ms if due else max(checkpoint[index], sealed[index])
    return chunks


def _joined(columns: Columns | None, more: Columns) -> Columns:
    """A new columns object holding `columns`' samples then `more`'s (neither changed)."""
    if columns is None:
        return more
    joined = columns.slice(0, len(columns))
    for sample in more.samples():
        joined.append(sample)  # type: ignore[arg-type]
    return joined


def seal_target(last_ms: int, finest: Tier) -> int:
    """Up to where the finest tier can be sealed once a round at `last_ms` is stored."""
    return aligned_below(last_ms, finest.chunk_ms)
