"""Readiness probes: is a gRPC server SERVING, does an HTTP endpoint answer 200 (with a text).

Each takes the `[tls]` settings of a client (`--secure`: the CA and the client certificate);
`http_ok` also takes a bearer token. gRPC health needs no token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh_common.addresses import HostPort
from mesh_common.tls import PLAINTEXT, TlsSettings, https_client_context
from mesh_common.transport import open_channel

Probe = Callable[[], Awaitable[bool]]
"""An async check that answers True once the thing it looks at is ready."""

PROBE_TIMEOUT_SECONDS = 1.0


def grpc_serving(
    address: str | HostPort,
    service: str = "",
    *,
    any_status: bool = False,
    tls: TlsSettings = PLAINTEXT,
) -> Probe:
    """A probe: grpc.health.v1 Check(`service`) on `address` answers SERVING.

    With `any_status`, any answer will do (a server that reports NOT_SERVING on purpose is up).
    """

    async def probe() -> bool:
        async with open_channel(address, tls=tls) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(
                    health_pb2.HealthCheckRequest(service=service),
                    timeout=PROBE_TIMEOUT_SECONDS,
                )
            except grpc.aio.AioRpcError:
                return False
        return any_status or bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


def http_ok(
    url: str, containing: str = "", *, tls: TlsSettings = PLAINTEXT, token: str = ""
) -> Probe:
    """A probe: GET `url` answers 200 (with `containing` in its body, when given).

    An https `url` is verified with `tls` (whose client certificate is shown under
    `client_auth`); `token` ('' = none) goes in `Authorization: Bearer`.
    """
    verify = https_client_context(tls) if tls.enabled else True
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def probe() -> bool:
        async with httpx.AsyncClient(
            timeout=PROBE_TIMEOUT_SECONDS, verify=verify, headers=headers
        ) as client:
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                return False
        return response.status_code == 200 and containing in response.text

    return probe


def all_of(*probes: Probe) -> Probe:
    """A probe that is ready when every one of `probes` is."""

    async def probe() -> bool:
        for each in probes:
            if not await each():
                return False
        return True

    return probe
