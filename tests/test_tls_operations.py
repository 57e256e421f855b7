"""TLS in operation: rotated files on a running gateway, peers that disagree about TLS.

Real programs (`metrics-mesh gateway`, `metrics-mesh aggregator`) on ephemeral ports, real
clients checking the certificate they are shown; files rotated on disk mid-run.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from demo_fleet.ports import free_ports
from gateway import GatewaySettings
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel
from metricsmesh_cli.certs import Certificates, write_certificates
from tests.cli import needs_cli
from tests.eventually import eventually
from tests.hardened_gateway import serve_hardened
from tests.tls_files import (
    certificate_of,
    client,
    https_client,
    install,
    replace,
    running,
    serving,
    shown_certificate,
)

pytestmark = needs_cli

HOSTS = ["127.0.0.1", "localhost"]
REST = "/api/v1/real-time-metrics"


def gateway_mesh(path: Path, port: int, aggregator: str, files: Certificates) -> Path:
    """A mesh file for a gateway on `port`, serving HTTPS (mutual TLS) from `files`."""
    path.write_text(
        f'[gateway]\nport = {port}\naggregator = "{aggregator}"\n\n{files.tls_lines()}',
        encoding="utf-8",
    )
    return path


async def shown_or_none(port: int, context: ssl.SSLContext) -> object:
    """The certificate a verifying client is shown, or None while it cannot be verified."""
    try:
        return await asyncio.to_thread(shown_certificate, port, context)
    except OSError:  # not serving yet, or not the certificate this client trusts (SSLError)
        return None


async def test_the_gateway_shows_rotated_https_files_to_new_connections(tmp_path: Path) -> None:
    first = write_certificates(tmp_path / "first", HOSTS)
    fresh = write_certificates(tmp_path / "fresh", HOSTS)  # a new CA, certificates and keys
    live = install(first, tmp_path / "live")
    port, nobody = free_ports(2)
    mesh = gateway_mesh(tmp_path / "mesh.toml", port, f"127.0.0.1:{nobody}", live)
    url = f"https://127.0.0.1:{port}/health/live"
    async with running("gateway", "--config", str(mesh)) as output:
        before = await eventually(
            lambda: shown_or_none(port, https_client(first)), timeout=30, what="HTTPS"
        )
        install(fresh, live.ca.parent)
        after = await eventually(
            lambda: shown_or_none(port, https_client(fresh)), what="the rotated certificate"
        )
        # A set that does not fit (a key of another certificate) is not taken.
        replace(first.server_key, live.server_key)
        kept = await shown_or_none(port, https_client(fresh))
        async with httpx.AsyncClient(verify=https_client(fresh), timeout=5) as http:
            answered = await http.get(url)
        retired = ssl.create_default_context(cafile=str(fresh.ca))
        retired.load_cert_chain(str(first.client), str(first.client_key))  # the old CA's
        async with httpx.AsyncClient(verify=retired, timeout=5) as http:
            with pytest.raises(httpx.HTTPError):
                await http.get(url)
    assert before == certificate_of(first.server)
    assert after == kept == certificate_of(fresh.server)
    assert answered.status_code == 200
    logged = (await output).decode()
    assert "HTTPS certificate files changed" in logged
    assert "the key does not belong to the certificate of cert_file; keeping the old" in logged


def aggregator_of(name: str, tls: TlsSettings, port: int = 0) -> AggregatorServer:
    """An aggregator (serving `tls`) of one service `name` whose agent is not running."""
    (nowhere,) = free_ports(1)
    registry = Registry([ServiceEntry(name, "127.0.0.1", 1, nowhere, "core")])
    settings = AggregatorSettings(port=port, interval_seconds=0.5, deadline_seconds=0.3)
    return AggregatorServer(registry, settings, tls=tls)


async def served_names(port: int, files: Certificates) -> set[str] | None:
    """The service names of the gateway's REST body over HTTPS (None while it fails)."""
    try:
        async with httpx.AsyncClient(verify=https_client(files), timeout=5) as http:
            response = await http.get(f"https://127.0.0.1:{port}{REST}")
    except httpx.HTTPError:
        return None
    body = response.json()
    rows = [*body["active_apis"], *body.get("inactive_services", [])]
    return {row["service_name"] for row in rows}


async def test_the_gateway_dials_the_aggregator_with_rotated_files(tmp_path: Path) -> None:
    first = write_certificates(tmp_path / "first", HOSTS)
    fresh = write_certificates(tmp_path / "fresh", HOSTS)
    live = install(first, tmp_path / "live")
    aggregator = aggregator_of("before-rotation", serving(live))
    port = await aggregator.start()
    (gateway_port,) = free_ports(1)
    mesh = gateway_mesh(tmp_path / "mesh.toml", gateway_port, f"127.0.0.1:{port}", live)
    try:
        async with running("gateway", "--config", str(mesh)) as output:
            names = await eventually(
                lambda: served_names(gateway_port, first), timeout=30, what="a snapshot"
            )
            assert names == {"before-rotation"}
            # A new CA for everyone; a new aggregator lifetime needs a new connection.
            install(fresh, live.ca.parent)
            await aggregator.stop(0)
            aggregator = aggregator_of("after-rotation", serving(live), port)
            await aggregator.start()

            async def renewed() -> bool:
                return await served_names(gateway_port, fresh) == {"after-rotation"}

            await eventually(renewed, timeout=20, what="the gateway dialling with the new CA")
    finally:
        await aggregator.stop(0)
    assert "[tls] files changed: a new channel with them" in (await output).decode()


# --- peers that disagree about TLS ------------------------------------------------------------


def aggregator_mesh(path: Path, port: int, name: str, agent_port: int, *, tls: str) -> Path:
    """A mesh file of an aggregator on `port` calling one agent every round (no backoff)."""
    path.write_text(
        f"""
[aggregator]
port = {port}
interval_seconds = 0.3
deadline_seconds = 0.2
backoff_max_seconds = 0

[[services]]
name = "{name}"
port = 9001
agent_port = {agent_port}
type = "core"

{tls}
""",
        encoding="utf-8",
    )
    return path


async def row_after(
    port: int, tls: TlsSettings | None, rounds: int
) -> snapshot_pb2.ServiceRow | None:
    """The only row of the aggregator's latest snapshot once it has made `rounds` rounds."""
    try:
        async with open_channel(f"127.0.0.1:{port}", tls=tls) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            answer = await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest(), timeout=5)
    except Exception:  # not serving yet
        return None
    snapshot = answer.snapshot
    return snapshot.services[0] if snapshot.sequence >= rounds else None


async def test_peers_that_disagree_about_tls_get_a_tls_reason_logged_once(
    tmp_path: Path,
) -> None:
    certs = write_certificates(tmp_path / "certs", HOSTS)
    plain_port, secure_port = free_ports(2)
    async with (
        AgentServer(EventTracker("tls-agent"), tls=serving(certs)) as tls_agent,
        AgentServer(EventTracker("plaintext-agent")) as plaintext_agent,
    ):
        plain = aggregator_mesh(
            tmp_path / "plain.toml", plain_port, "tls-agent", tls_agent.port, tls=""
        )
        secure = aggregator_mesh(
            tmp_path / "secure.toml",
            secure_port,
            "plaintext-agent",
            plaintext_agent.port,
            tls=certs.tls_lines(),
        )
        async with (
            running("aggregator", "--config", str(plain)) as plain_output,
            running("aggregator", "--config", str(secure)) as secure_output,
        ):
            # 12 rounds, each calling the agent (no backoff): many connection attempts.
            dials_tls = await eventually(
                lambda: row_after(plain_port, None, 12), timeout=30, what="12 rounds"
            )
            dials_plaintext = await eventually(
                lambda: row_after(secure_port, client(certs), 12), timeout=30, what="12 rounds"
            )
    assert dials_tls.error_message.startswith(
        "TLS: the peer closed the plaintext connection at once: it may require TLS"
    ), dials_tls.error_message
    assert dials_plaintext.error_message.startswith(
        "TLS: handshake failed: the peer does not speak TLS"
    ), dials_plaintext.error_message
    for output, name, port in (
        (plain_output, "tls-agent", tls_agent.port),
        (secure_output, "plaintext-agent", plaintext_agent.port),
    ):
        lines = [
            line
            for line in (await output).decode().splitlines()
            if name in line or f":{port}" in line or "andshake" in line
        ]
        assert len(lines) == 1, lines  # one status change, not one line per attempt
        assert f"service {name}: unknown -> inactive (TLS: " in lines[0]


async def test_a_plaintext_gateway_says_its_tls_aggregator_wants_tls(tmp_path: Path) -> None:
    files = write_certificates(tmp_path, HOSTS)
    settings = AggregatorSettings(port=0, interval_seconds=0.2, deadline_seconds=0.15)
    async with AggregatorServer(Registry([]), settings, tls=serving(files)) as aggregator:
        gateway = GatewaySettings(port=0, aggregator=aggregator.address, services_configured=0)
        async with (
            serve_hardened(gateway) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        ):

            async def told() -> str | None:
                upstream = (await http.get("/health/detailed")).json()["upstream"]
                error = upstream.get("error") or ""
                return error if "TLS:" in error else None

            error = await eventually(told, what="the upstream error naming TLS")
    assert "may require TLS (this end has no [tls] table)" in error
