"""metrics-mesh aggregator: fan-out rounds over every agent, snapshots, history and streaming.

config = load_config("mesh.toml")
async with AggregatorServer(config.services, config.aggregator) as server:
    print(server.address)
"""

from aggregator._errors import AggregatorError, AggregatorStateError, ConfigError
from aggregator._model import Clock
from aggregator._server import SYSTEM_CLOCK, AggregatorServer
from aggregator.config import (
    DEFAULT_REGISTRY,
    AggregatorSettings,
    MeshConfig,
    Registry,
    ServiceEntry,
    load_config,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "SYSTEM_CLOCK",
    "AggregatorError",
    "AggregatorServer",
    "AggregatorSettings",
    "AggregatorStateError",
    "Clock",
    "ConfigError",
    "MeshConfig",
    "Registry",
    "ServiceEntry",
    "load_config",
]
