"""The history store: every round kept, in tiers, with exact figures over any range.

The writer (`HistoryWriter`, an observer of the round loop) turns each round into samples and
keeps them in a `HistoryStore` (SQLite by default, `sqlite.py`; PostgreSQL, `postgres.py`);
`HistoryReader` reads a tier's samples back, `query.py` computes figures over a range and step
from them and `engine.py` answers the queries. docs/architecture.md's "The history store" draws
the whole; each module's docstring describes its part.
"""

from aggregator._errors import HistoryQueryError, HistoryStoreError
from aggregator._history.model import (
    ChunkRecord,
    Cursor,
    CursorRecord,
    KindSample,
    Sample,
    SeriesKey,
    SeriesRecord,
    ServiceSample,
    StoreSize,
    Tier,
    TierSize,
)
from aggregator._history.query import (
    FIGURES,
    Figure,
    Point,
    choose_tier,
    evaluate_instant,
    evaluate_latest,
    evaluate_range,
)
from aggregator._history.reader import HistoryReader
from aggregator._history.settings import SECTION, HistorySettings
from aggregator._history.store import HistoryStore, StoreOpener, store_opener
from aggregator._history.tiers import parse_tiers
from aggregator._history.writer import HistoryStatus, HistoryWriter

__all__ = [
    "FIGURES",
    "SECTION",
    "ChunkRecord",
    "Cursor",
    "CursorRecord",
    "Figure",
    "HistoryQueryError",
    "HistoryReader",
    "HistorySettings",
    "HistoryStatus",
    "HistoryStore",
    "HistoryStoreError",
    "HistoryWriter",
    "KindSample",
    "Point",
    "Sample",
    "SeriesKey",
    "SeriesRecord",
    "ServiceSample",
    "StoreOpener",
    "StoreSize",
    "Tier",
    "TierSize",
    "choose_tier",
    "evaluate_instant",
    "evaluate_latest",
    "evaluate_range",
    "parse_tiers",
    "store_opener",
]
