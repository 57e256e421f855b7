"""The agent package exports exactly the names a service needs, and each of them works."""

from __future__ import annotations

import pytest

import agent
import mesh_common.errors
from agent import AgentServer, EventTracker
from mesh_common.errors import MeshError

INTENDED = [
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


def test_all_is_exactly_the_intended_names_sorted() -> None:
    assert agent.__all__ == INTENDED


def test_star_import_gives_exactly_those_names() -> None:
    namespace: dict[str, object] = {}
    exec("from agent import *", namespace)
    assert sorted(name for name in namespace if name != "__builtins__") == sorted(INTENDED)


def test_every_exported_name_is_public_and_documented() -> None:
    for name in INTENDED:
        value = getattr(agent, name)
        assert value.__doc__, f"{name} has no docstring"
        # Defined in the agent, or in mesh_common when every component shares it.
        assert value.__module__.startswith(("agent.", "mesh_common.")), name


def test_the_shared_errors_are_mesh_commons_own() -> None:
    assert agent.PortInUseError is mesh_common.errors.PortInUseError
    assert agent.ServerStateError is mesh_common.errors.ServerStateError


def test_errors_form_one_tree_under_mesh_error() -> None:
    for error in (agent.AgentError, agent.PortInUseError, agent.ServerStateError):
        assert issubclass(error, MeshError), error
    # The agent's own base is not a parent of the shared ones: each means one thing.
    assert not issubclass(agent.PortInUseError, agent.AgentError)
    assert not issubclass(agent.ServerStateError, agent.AgentError)


async def test_a_taken_port_is_caught_as_a_mesh_error() -> None:
    async with AgentServer(EventTracker("first")) as first:
        second = AgentServer(EventTracker("second"), port=first.port)
        with pytest.raises(MeshError) as caught:
            await second.start()
    assert isinstance(caught.value, agent.PortInUseError)
    assert mesh_common.errors.exit_status(caught.value) == mesh_common.errors.EXIT_PORT_IN_USE
