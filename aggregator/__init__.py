"""metrics-mesh aggregator: fan-out rounds over every agent, snapshots, history and streaming.

config = load_config("mesh.toml")
async with AggregatorServer(config.services, config.aggregator) as server:
    print(server.address)
"""

from mesh_common import grpc_verbosity  # noqa: F401  # first: gRPC reads it on import

# isort: split

from aggregator._alerts.settings import AlertSettings, default_state_dir
from aggregator._errors import (
    AggregatorError,
    AggregatorStateError,
    RuleError,
    TooManySubscribers,
)
from aggregator._history.settings import HistorySettings
from aggregator._ingest.settings import SECTION as INGEST_SECTION
from aggregator._ingest.settings import IngestSettings
from aggregator._model import SnapshotData
from aggregator._server import AggregatorServer
from aggregator._settings import SECTION, AggregatorConfig, AggregatorSettings, load_config
from mesh_common.clocks import SYSTEM_CLOCKS, Clocks
from mesh_common.errors import ConfigError, FilterError
from mesh_common.registry import DEFAULT_REGISTRY, Registry, ServiceEntry

__all__ = [
    "DEFAULT_REGISTRY",
    "INGEST_SECTION",
    "SECTION",
    "SYSTEM_CLOCKS",
    "AggregatorConfig",
    "AggregatorError",
    "AggregatorServer",
    "AggregatorSettings",
    "AggregatorStateError",
    "AlertSettings",
    "Clocks",
    "ConfigError",
    "FilterError",
    "HistorySettings",
    "IngestSettings",
    "Registry",
    "RuleError",
    "ServiceEntry",
    "SnapshotData",
    "TooManySubscribers",
    "default_state_dir",
    "load_config",
]
