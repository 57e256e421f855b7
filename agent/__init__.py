"""metrics-mesh agent: count a service's events and serve its live rate over gRPC.

tracker = EventTracker("weather-api", kinds=["api_call", "data_fetch"])
tracker.record("api_call")                           # or keep tracker.counter("api_call").record
app.add_middleware(RequestCountMiddleware, tracker=tracker)          # FastAPI / any ASGI app
grpc.aio.server(interceptors=[RpcCountInterceptor(tracker)])         # a gRPC server's calls
@counted(tracker, "data_fetch")                                      # a function's calls
async with AgentServer(tracker, port=50051):         # or AgentServerThread in threaded code
    ...
AgentServer(tracker, register_with="aggregator:50100")  # joins the fleet by itself, with a lease
"""

from agent._asgi import RequestCountMiddleware, http_route_kind
from agent._counted import CallCounter, counted
from agent._errors import AgentError
from agent._interceptor import RpcCountInterceptor, SyncRpcCountInterceptor
from agent._server import AgentServer, AgentServerThread
from agent._tracker import EventTracker, KindCounter, KindReading, RateReading
from mesh_common.errors import PortInUseError, ServerStateError

__all__ = [
    "AgentError",
    "AgentServer",
    "AgentServerThread",
    "CallCounter",
    "EventTracker",
    "KindCounter",
    "KindReading",
    "PortInUseError",
    "RateReading",
    "RequestCountMiddleware",
    "RpcCountInterceptor",
    "ServerStateError",
    "SyncRpcCountInterceptor",
    "counted",
    "http_route_kind",
]
