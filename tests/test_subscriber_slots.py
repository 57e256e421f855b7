"""The aggregator's reserved StreamSnapshots slots go to the gateway by identity, not address.

With `[auth]` (a token with the `gateway` scope) or mutual TLS (a certificate named in
`trusted_clients`), 50 other subscribers from the gateway's own address cannot lock the
gateway out, and the per-caller cap counts identities. Real aggregator, real gateway, real
gRPC clients, ephemeral ports; every caller dials from 127.0.0.1, a `trusted_peers` host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import grpc
import httpx
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc

from aggregator import AggregatorServer, AggregatorSettings, Registry
from gateway import GatewaySettings
from mesh_common.auth_settings import AuthSettings
from mesh_common.errors import ConfigError
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel
from metricsmesh_cli.certs import Certificates, write_certificates
from tests.auth_fixtures import auth_settings, signed
from tests.eventually import eventually
from tests.hardened_gateway import serve_hardened

OTHERS = 50
"""Subscribers other than the gateway: as many as the slots open to them."""
RESERVED = 2
MODES = ("token", "certificate")
OPEN_SLOTS_TAKEN = "slots open to callers other than the gateway are taken"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return write_certificates(tmp_path_factory.mktemp("certs"), ["127.0.0.1", "localhost"])


def presenting(certs: Certificates, cert: str, key: str) -> TlsSettings:
    """A `[tls]` table under mutual TLS that presents the certificate `cert` of `certs`."""
    return TlsSettings(
        ca_file=str(certs.ca),
        cert_file=str(getattr(certs, cert)),
        key_file=str(getattr(certs, key)),
        client_auth=True,
    )


@dataclasses.dataclass(frozen=True)
class Mode:
    """How callers prove who they are: `[auth]` tokens, or client certificates."""

    auth: AuthSettings | None
    server_tls: TlsSettings | None
    gateway_tls: TlsSettings | None
    trusted_clients: tuple[str, ...]


def mode_of(name: str, certs: Certificates) -> Mode:
    if name == "token":
        return Mode(auth_settings(), None, None, ())
    return Mode(
        None,
        presenting(certs, "server", "server_key"),
        presenting(certs, "gateway", "gateway_key"),
        ("gateway",),
    )


def reader(name: str) -> tuple[tuple[str, str], ...]:
    """The metadata of a read-scope JWT of subject `name`."""
    token = signed({"sub": name, "scope": "read", "exp": 2**40})
    return (("authorization", f"Bearer {token}"),)


@asynccontextmanager
async def aggregator_in(mode: Mode, **changes: Any) -> AsyncIterator[AggregatorServer]:
    settings = AggregatorSettings(
        port=0,
        interval_seconds=0.2,
        deadline_seconds=0.15,
        trusted_clients=mode.trusted_clients,
        **changes,
    )
    assert "127.0.0.1" in settings.trusted_peers  # every caller here is at a trusted address
    async with AggregatorServer(
        Registry([]), settings, auth=mode.auth, tls=mode.server_tls
    ) as server:
        yield server


async def subscribe(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.AioRpcError | grpc.aio.UnaryStreamCall[Any, Any]:
    """A StreamSnapshots call that delivered its first message, or the error that ended it."""
    stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
    call = stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest(), metadata=metadata)
    try:
        await call.read()
    except grpc.aio.AioRpcError as error:
        return error
    return call


def refusals(results: list[Any]) -> list[grpc.aio.AioRpcError]:
    return [result for result in results if isinstance(result, grpc.aio.AioRpcError)]


@pytest.mark.parametrize("mode_name", MODES)
async def test_the_gateway_streams_while_50_others_at_its_address_hold_every_other_slot(
    certs: Certificates, mode_name: str
) -> None:
    mode = mode_of(mode_name, certs)
    others_tls = None if mode.server_tls is None else presenting(certs, "client", "client_key")
    async with (
        aggregator_in(
            mode,
            max_subscribers=OTHERS + RESERVED,
            reserved_subscribers=RESERVED,
            max_streams_per_peer=OTHERS + RESERVED,  # certificate mode: one name for all 50
        ) as server,
        open_channel(server.address, tls=others_tls) as channel,
    ):
        # Two more than the open slots: from the gateway's address, without the gateway's
        # scope or certificate, they must not take the reserved ones.
        metadata = [reader(f"reader-{i}") if mode.auth else () for i in range(OTHERS + 2)]
        results = await asyncio.gather(*(subscribe(channel, each) for each in metadata))
        refused = refusals(results)
        assert len(refused) == 2 and server.subscriber_count == OTHERS
        for error in refused:
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert OPEN_SLOTS_TAKEN in (error.details() or "")
            assert "reserved_subscribers" in (error.details() or "")
        gateway = GatewaySettings(port=0, aggregator=server.address, services_configured=0)
        async with (
            serve_hardened(gateway, auth=mode.auth, tls=mode.gateway_tls) as port,
            http_client(certs, mode) as http,
        ):
            scheme = "http" if mode.gateway_tls is None else "https"
            url = f"{scheme}://127.0.0.1:{port}/api/v1/real-time-metrics"

            async def answered() -> bool:
                return (await http.get(url)).status_code == 200

            await eventually(answered, what="REST 200 from the gateway while others stream")
            assert server.subscriber_count == OTHERS + 1
        for result in results:
            if not isinstance(result, grpc.aio.AioRpcError):
                result.cancel()


@asynccontextmanager
async def http_client(certs: Certificates, mode: Mode) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway: plain HTTP, or HTTPS with a client certificate (mutual TLS)."""
    verify: ssl.SSLContext | bool = True
    if mode.gateway_tls is not None:
        verify = ssl.create_default_context(cafile=str(certs.ca))
        verify.load_cert_chain(str(certs.client), str(certs.client_key))
    async with httpx.AsyncClient(verify=verify, timeout=5) as client:
        yield client


@pytest.mark.parametrize("mode_name", MODES)
async def test_the_per_caller_cap_counts_identities_not_addresses(
    certs: Certificates, mode_name: str
) -> None:
    mode = mode_of(mode_name, certs)
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(aggregator_in(mode, max_streams_per_peer=2))
        if mode.auth is not None:
            channel = await stack.enter_async_context(open_channel(server.address))
            first, first_metadata = channel, reader("reader-a")
            second, second_metadata = channel, reader("reader-b")
            capped = "token 'reader-a'"
        else:  # two certificates, two callers; the same address
            tls = presenting(certs, "client", "client_key")
            first = await stack.enter_async_context(open_channel(server.address, tls=tls))
            tls = presenting(certs, "server", "server_key")
            second = await stack.enter_async_context(open_channel(server.address, tls=tls))
            first_metadata = second_metadata = ()
            capped = "client certificate 'metrics-mesh client'"
        taken = [await subscribe(first, first_metadata) for _ in range(2)]
        assert not refusals(taken)
        (error,) = refusals([await subscribe(first, first_metadata)])
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"({capped})" in (error.details() or "")
        assert "max_streams_per_peer" in (error.details() or "")
        other = await subscribe(second, second_metadata)  # another identity, same address
        assert not refusals([other])
        assert server.subscriber_count == 3
        for call in (*taken, other):
            call.cancel()


def test_trusted_clients_without_mutual_tls_is_refused_naming_the_key() -> None:
    settings = AggregatorSettings(port=0, trusted_clients=("gateway",))
    with pytest.raises(ConfigError, match=r"trusted_clients.*client_auth"):
        AggregatorServer(Registry([]), settings, auth=auth_settings())
    with pytest.raises(ConfigError, match="trusted_clients: a name must not be empty"):
        AggregatorSettings(trusted_clients=(" ",))
