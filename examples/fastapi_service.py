"""A FastAPI service with the metrics-mesh agent embedded: python examples/fastapi_service.py

Every HTTP request counts as `api_call` (the ASGI middleware); each upstream fetch counts as
`data_fetch` with `counted` (timed, and failed when it raises). The agent serves
the live rate over gRPC on --agent-port, next to the app's own HTTP port, for as long as the
app runs: it starts and stops in the app's lifespan.

    python examples/fastapi_service.py --port 8009 --agent-port 18009
    curl -s localhost:8009/weather
    grpcurl -plaintext localhost:18009 metricsmesh.v1.EventRateService/GetEventRate
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from agent import AgentServer, EventTracker, RequestCountMiddleware, counted

tracker = EventTracker("weather-api", kinds=["api_call", "data_fetch"])


@counted(tracker, "data_fetch")
async def fetch_weather() -> dict[str, float]:
    """Stands in for a call to a real weather API."""
    await asyncio.sleep(0.01)
    return {"temperature_c": round(random.uniform(-5, 30), 1)}


def create_app(agent_port: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AgentServer(tracker, port=agent_port) as agent:
            print(f"agent serving on {agent.address}", flush=True)
            yield

    app = FastAPI(title="weather-api", lifespan=lifespan)
    app.add_middleware(RequestCountMiddleware, tracker=tracker, kind="api_call")

    @app.get("/weather")
    async def weather() -> dict[str, float]:
        return await fetch_weather()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8009, help="HTTP port (default 8009)")
    parser.add_argument("--agent-port", type=int, default=18009, help="agent port (18009)")
    args = parser.parse_args()
    uvicorn.run(create_app(args.agent_port), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
