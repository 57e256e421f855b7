"""Talking to the aggregator from the command line: the target, the request, the errors."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from metricsmesh.v1 import aggregator_pb2

from aggregator import MeshConfig


def aggregator_target(config: MeshConfig, override: str | None = None) -> str:
    """Where to dial the aggregator: `override`, else the config's `[aggregator]` host:port.

    A wildcard bind host (0.0.0.0, ::) means this machine.
    """
    if override:
        return override
    host = config.aggregator.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{config.aggregator.port}"


def snapshot_filter(
    services: Sequence[str] = (), types: Sequence[str] = ()
) -> aggregator_pb2.SnapshotFilter:
    """A filter keeping the named services and/or types (empty keeps everything)."""
    return aggregator_pb2.SnapshotFilter(service_names=list(services), service_types=list(types))


def describe_rpc_error(target: str, error: grpc.aio.AioRpcError) -> str:
    """A message an operator can act on, for a failed call to the aggregator."""
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            f"cannot reach the aggregator at {target} ({details}); is it running? "
            "Start one with `metrics-mesh aggregator` or `metrics-mesh demo`, or point "
            "--aggregator / --config at the right address"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the aggregator at {target} did not answer in time ({details})"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return f"the aggregator at {target} refused the request: {details}"
    name = code.name if code is not None else "UNKNOWN"
    return f"the aggregator at {target} answered {name}: {details}"
