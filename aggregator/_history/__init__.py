"""The history store: every round kept, in tiers, with exact figures over any range."""

from aggregator._errors import HistoryQueryError, HistoryStoreError
from aggregator._history.settings import SECTION, HistorySettings
from aggregator._history.tiers import choose_tier, parse_tiers

__all__ = [
    "SECTION",
    "HistoryQueryError",
    "HistorySettings",
    "HistoryStoreError",
    "choose_tier",
    "parse_tiers",
]
