"""A mesh with `[auth]` on every hop (and `[tls]` when given): agents, aggregator, gateway.

`secure_mesh(auth)` runs real agents of the first `services` built-in services, an aggregator
and the hardened gateway (gateway.__main__'s uvicorn configuration), all on 127.0.0.1 port 0,
with `auth` on the aggregator and the gateway. With `tls` every hop is TLS and the gateway
serves HTTPS; its `url` says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from agent import AgentServer, EventTracker
from aggregator import DEFAULT_REGISTRY, AggregatorServer, AggregatorSettings, Registry
from gateway import GatewaySettings
from mesh_common.auth_settings import AuthSettings
from mesh_common.tls import TlsSettings
from tests.hardened_gateway import serve_hardened


@dataclasses.dataclass
class SecureMesh:
    """The running agents and the gateway's base URL."""

    url: str
    agents: dict[str, AgentServer]

    def tracker(self, name: str) -> EventTracker:
        """The tracker of one service's agent."""
        return self.agents[name].tracker


@asynccontextmanager
async def secure_mesh(
    auth: AuthSettings, *, tls: TlsSettings | None = None, services: int = 1
) -> AsyncIterator[SecureMesh]:
    """Agents, an aggregator and a gateway, with `auth` (and `tls`); yields them running."""
    async with AsyncExitStack() as stack:
        agents: dict[str, AgentServer] = {}
        entries = []
        for entry in DEFAULT_REGISTRY[:services]:
            agent = AgentServer(EventTracker(entry.name), grace_seconds=0, tls=tls)
            await agent.start()
            stack.push_async_callback(agent.stop, 0)
            agents[entry.name] = agent
            entries.append(dataclasses.replace(entry, host="127.0.0.1", agent_port=agent.port))
        settings = AggregatorSettings(port=0, interval_seconds=0.2, deadline_seconds=0.15)
        aggregator = await stack.enter_async_context(
            AggregatorServer(Registry(entries), settings, auth=auth, tls=tls)
        )
        gateway = GatewaySettings(
            port=0, aggregator=aggregator.address, services_configured=services
        )
        port = await stack.enter_async_context(serve_hardened(gateway, auth=auth, tls=tls))
        scheme = "https" if tls is not None else "http"
        yield SecureMesh(f"{scheme}://127.0.0.1:{port}", agents)
