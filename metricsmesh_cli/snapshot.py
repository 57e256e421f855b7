"""`metrics-mesh snapshot`: one GetSnapshot, printed as a table or as protobuf JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import grpc
from google.protobuf import json_format
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2
from rich.console import Console

from mesh_common.addresses import HostPort
from mesh_common.auth_client import bearer_interceptors
from mesh_common.errors import EXIT_FAILURE, EXIT_USAGE
from mesh_common.filters import ServiceFilter
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel
from mesh_common.views import SNAPSHOT_AGE_FIELD, RowValues, View, age_ms, rest_body
from mesh_common.wire_time import duration, to_seconds
from metricsmesh_cli.client import describe_rpc_error, snapshot_filter
from metricsmesh_cli.render import snapshot_view

PIPE_WIDTH = 180
"""The width of a piped table: every column whole, the last one (kinds, errors) wrapping."""


def print_view(console: Console, snapshot: snapshot_pb2.Snapshot) -> None:
    """Print the snapshot's table, fitted to the terminal, or PIPE_WIDTH wide when piped.

    Rich gives a pipe 80 columns and would squeeze every column into them, cutting cells to
    a few letters; a pipe has no width, so the table gets one that holds every column.
    """
    if console.is_terminal:
        console.print(snapshot_view(snapshot, width=console.width))
        return
    wide = Console(file=console.file, width=PIPE_WIDTH, no_color=console.no_color)
    wide.print(snapshot_view(snapshot, width=PIPE_WIDTH))


async def fetch_snapshot(
    target: HostPort,
    *,
    services: Sequence[str] = (),
    types: Sequence[str] = (),
    max_age: float | None = None,
    timeout: float = 5.0,
    token: str = "",
    tls: TlsSettings | None = None,
) -> snapshot_pb2.Snapshot:
    """One GetSnapshot from the aggregator at `target` (over TLS with `tls`, bearer `token`).

    Raises grpc.aio.AioRpcError.
    """
    request = aggregator_pb2.GetSnapshotRequest(filter=snapshot_filter(services, types))
    if max_age is not None:
        request.max_age.CopyFrom(duration(max_age))
    interceptors = bearer_interceptors(token)
    async with open_channel(target, tls=tls, interceptors=interceptors) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        response = await stub.GetSnapshot(request, timeout=timeout, wait_for_ready=False)
    return response.snapshot


def refusal_status(error: grpc.aio.AioRpcError) -> int:
    """The exit status of a failed call: EXIT_USAGE for INVALID_ARGUMENT, else EXIT_FAILURE.

    The aggregator answers INVALID_ARGUMENT only for what the command line asked for (an
    unknown service name or type in the filter, a duration out of range): a usage error.
    """
    if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return EXIT_USAGE
    return EXIT_FAILURE


def snapshot_rest_json(
    snapshot: snapshot_pb2.Snapshot, services: Sequence[str] = (), types: Sequence[str] = ()
) -> str:
    """The snapshot as the gateway's REST body (the same field names, units and totals)."""
    rows = [RowValues(row) for row in snapshot.services]
    body = rest_body(snapshot, rows, View(ServiceFilter.of(services, types)))
    age = age_ms(to_seconds(snapshot.age))
    return json.dumps({**body, SNAPSHOT_AGE_FIELD: age}, indent=2)


def snapshot_json(snapshot: snapshot_pb2.Snapshot) -> str:
    """The snapshot in protobuf's canonical JSON mapping (camelCase keys, enum names)."""
    return json_format.MessageToJson(snapshot, indent=2)


def run_snapshot(
    target: HostPort,
    *,
    output: str,
    console: Console,
    errors: Console,
    services: Sequence[str] = (),
    types: Sequence[str] = (),
    max_age: float | None = None,
    timeout: float = 5.0,
    token: str = "",
    tls: TlsSettings | None = None,
) -> int:
    """Fetch and print one snapshot; returns the exit status.

    0 once printed; 2 (EXIT_USAGE) when the aggregator refused the request as INVALID_ARGUMENT
    (an unknown `--service` or `--type`, a `--max-age` out of range); 1 when the call failed
    otherwise (an unreachable aggregator, a deadline). The aggregator's message, which names
    the unknown names and the known ones, goes to `errors`; nothing goes to `console` then.
    """
    try:
        snapshot = asyncio.run(
            fetch_snapshot(
                target,
                services=services,
                types=types,
                max_age=max_age,
                timeout=timeout,
                token=token,
                tls=tls,
            )
        )
    except grpc.aio.AioRpcError as error:
        errors.print(
            f"metrics-mesh snapshot: {describe_rpc_error(target, error, tls)}", markup=False
        )
        return refusal_status(error)
    if output in ("json", "protobuf-json"):
        text = (
            snapshot_rest_json(snapshot, services, types)
            if output == "json"
            else snapshot_json(snapshot)
        )
        console.file.write(text + "\n")
        console.file.flush()
    else:
        print_view(console, snapshot)
    return 0
