"""metrics-mesh agent: count a service's events and serve its live rate over gRPC.

tracker = EventTracker("weather-api", kinds=["api_call", "data_fetch"])
tracker.record("api_call")
async with AgentServer(tracker, port=50051):
    ...
"""

from agent._errors import AgentError, PortInUseError, ServerStateError
from agent._server import AgentServer, AgentServerThread
from agent._tracker import EventTracker, KindCounter, KindReading, RateReading

__all__ = [
    "AgentError",
    "AgentServer",
    "AgentServerThread",
    "EventTracker",
    "KindCounter",
    "KindReading",
    "PortInUseError",
    "RateReading",
    "ServerStateError",
]
