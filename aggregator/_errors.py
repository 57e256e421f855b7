"""Errors the aggregator raises, each with a message the operator can act on.

AggregatorError
 ├── ConfigError        the configuration file or an environment override is invalid
 └── AggregatorStateError  start/stop called in the wrong order
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Base class of every error raised by the aggregator."""


class ConfigError(AggregatorError):
    """The configuration is invalid; the message names the entry and the problem."""


class AggregatorStateError(AggregatorError):
    """A lifecycle method was called in a state where it cannot run (e.g. start twice)."""
