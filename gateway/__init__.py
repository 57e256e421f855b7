"""metrics-mesh gateway: REST, SSE, WebSocket, Prometheus exposition and the dashboard.

app = create_app(load_settings("mesh.toml"))   # a FastAPI app; serve it with uvicorn
python -m gateway --config mesh.toml --port 8000 --aggregator 127.0.0.1:50100
"""

from mesh_common import grpc_verbosity  # noqa: F401  # first: gRPC reads it on import

# isort: split

from gateway._app import create_app
from gateway._errors import GatewayError
from gateway._models import RealTimeMetrics, RealTimeMetricsError, ServiceMetrics
from gateway._settings import SECTION, GatewaySettings, load_settings
from mesh_common.errors import ConfigError

__all__ = [
    "SECTION",
    "ConfigError",
    "GatewayError",
    "GatewaySettings",
    "RealTimeMetrics",
    "RealTimeMetricsError",
    "ServiceMetrics",
    "create_app",
    "load_settings",
]
