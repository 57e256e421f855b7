"""Talking to the aggregator from the command line: the target, the request, the errors."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from metricsmesh.v1 import aggregator_pb2

from mesh_common.addresses import HostPort
from mesh_common.config import MeshFile
from mesh_common.errors import ConfigError
from mesh_common.tls import TlsSettings, connection_failure


def aggregator_target(mesh: MeshFile, override: HostPort | None = None) -> HostPort:
    """Where to dial the aggregator: `override`, else the `[aggregator]` host:port of `mesh`.

    A wildcard bind host (0.0.0.0, ::) means this machine. Raises ConfigError when the
    configured port is 0 (any free port: there is no telling which one the aggregator got).
    """
    if override is not None:
        return override
    from aggregator import SECTION

    settings = mesh.read(SECTION)
    if settings.port == 0:
        raise ConfigError(
            f"{mesh.source}: [aggregator] port is 0 (any free port), so there is no address to "
            "dial; give --aggregator HOST:PORT"
        )
    return HostPort(settings.host, settings.port).dialable()


def client_token(mesh: MeshFile) -> str:
    """The bearer token to send the aggregator: `[auth] client_token` of `mesh` ('' = none)."""
    from mesh_common.auth_settings import SECTION

    return mesh.read(SECTION).client_token


def snapshot_filter(
    services: Sequence[str] = (), types: Sequence[str] = ()
) -> aggregator_pb2.SnapshotFilter:
    """A filter keeping the named services and/or types (empty keeps everything)."""
    return aggregator_pb2.SnapshotFilter(service_names=list(services), service_types=list(types))


def describe_rpc_error(
    target: HostPort, error: grpc.aio.AioRpcError, tls: TlsSettings | None = None
) -> str:
    """A message an operator can act on, for a failed call to the aggregator (over `tls`)."""
    code = error.code()
    details = error.details() or ""
    plaintext = tls is None or not tls.enabled
    handshake = connection_failure(details, plaintext=plaintext)
    if handshake is not None:
        return f"no secure connection to the aggregator at {target}: {handshake}; check [tls]"
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            f"cannot reach the aggregator at {target} ({details}); is it running? "
            "Start one with `metrics-mesh aggregator` or `metrics-mesh demo`, or point "
            "--aggregator / --config at the right address"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the aggregator at {target} did not answer in time ({details})"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return (
            f"the aggregator at {target} refused the call ({details}); set [auth] client_token "
            "(or METRICS_MESH_AUTH_CLIENT_TOKEN) to a token with the scope it needs"
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return f"the aggregator at {target} refused the request: {details}"
    name = code.name if code is not None else "UNKNOWN"
    return f"the aggregator at {target} answered {name}: {details}"
