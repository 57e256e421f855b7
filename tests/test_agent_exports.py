"""The agent package exports exactly the names a service needs, and each of them works."""

from __future__ import annotations

import agent

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
        assert value.__module__.startswith("agent."), name


def test_errors_form_one_hierarchy() -> None:
    assert issubclass(agent.PortInUseError, agent.AgentError)
    assert issubclass(agent.ServerStateError, agent.AgentError)
