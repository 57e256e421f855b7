"""Errors the aggregator raises, each with a message the operator can act on.

MeshError (mesh_common.errors)
 └── AggregatorError
      ├── AggregatorStateError   start/stop called in the wrong order, or shutting down
      ├── TooManySubscribers     the StreamSnapshots cap is reached
Configuration errors are mesh_common's ConfigError, shared by every component.
"""

from __future__ import annotations

from mesh_common.errors import MeshError


class AggregatorError(MeshError):
    """Base class of every error raised by the aggregator."""


class AggregatorStateError(AggregatorError):
    """A lifecycle method was called in a state where it cannot run (e.g. start twice)."""


class TooManySubscribers(AggregatorError):
    """The subscriber cap is reached; the message names the limit."""
