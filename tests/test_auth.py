"""The `[auth]` table and the Verifier: tokens to identities, scopes, expiry, logins."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, alerts_pb2, ingest_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from aggregator import AggregatorServer, AggregatorSettings, Registry
from mesh_common.auth import Identity, Verifier, bearer_token
from mesh_common.auth_client import bearer_interceptors
from mesh_common.auth_settings import SECTION, AuthSettings
from mesh_common.clocks import Clocks
from mesh_common.errors import ConfigError, ScopeError, TokenError
from mesh_common.passwords import check_password, hash_password
from mesh_common.transport import open_channel
from tests.auth_fixtures import (
    GATEWAY_TOKEN,
    PASSWORD,
    READ_TOKEN,
    SECRET,
    WRITE_TOKEN,
    auth_settings,
    signed,
)
from tests.clocks import FakeClock

NOW = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def verifier(clock: FakeClock) -> Verifier:
    return Verifier(auth_settings(), clocks=Clocks(monotonic=clock, wall=clock))


def test_no_auth_table_means_authentication_off() -> None:
    assert not SECTION.parse(None, {}).enabled
    assert not AuthSettings().enabled
    assert auth_settings().enabled


def test_static_tokens_carry_their_scopes_and_admin_implies_the_rest(verifier: Verifier) -> None:
    reader = verifier.identify(READ_TOKEN)
    assert reader == Identity("reader", frozenset({"read"}))
    with pytest.raises(ScopeError, match="'reader' lacks the 'write' scope"):
        reader.require("write")
    assert verifier.identify(WRITE_TOKEN).scopes == {"read", "write"}
    admin = signed({"sub": "root", "scope": "admin", "exp": NOW + 60})
    assert verifier.identify(admin).scopes == {"read", "write", "admin"}


def test_the_gateway_scope_is_carried_by_tokens_and_logins_and_implies_nothing(
    clock: FakeClock,
) -> None:
    settings = auth_settings(
        users=[{"username": "gw", "password_hash": hash_password(PASSWORD, cost=2**10),
                "scopes": ["read", "gateway"]}],
    )  # fmt: skip
    verifier = Verifier(settings, clocks=Clocks(monotonic=clock, wall=clock))
    assert verifier.identify(GATEWAY_TOKEN).scopes == {"read", "write", "gateway"}
    alone = verifier.identify(signed({"sub": "gw", "scope": "gateway", "exp": NOW + 60}))
    assert alone.scopes == {"gateway"}
    with pytest.raises(ScopeError, match="'read' scope"):
        alone.require("read")
    token, _ = verifier.issue(verifier.login("gw", PASSWORD))
    assert verifier.identify(token) == Identity("gw", frozenset({"read", "gateway"}))
    with pytest.raises(ConfigError, match="read, write, admin, gateway"):
        auth_settings(api_tokens=[{"name": "a", "sha256": "0" * 64, "scopes": ["gateways"]}])


def test_an_unknown_static_token_is_refused(verifier: Verifier) -> None:
    with pytest.raises(TokenError, match="not one of"):
        verifier.identify("guess")


def test_a_jwt_expires_by_the_injected_clock(verifier: Verifier, clock: FakeClock) -> None:
    token = signed({"sub": "ci", "scope": "read", "exp": NOW + 10})
    assert verifier.identify(token).name == "ci"
    clock.tick(10)
    with pytest.raises(TokenError, match="expired"):
        verifier.identify(token)


def test_a_jwt_with_a_wrong_signature_or_no_expiry_is_refused(verifier: Verifier) -> None:
    forged = signed({"sub": "x", "scope": "admin", "exp": NOW + 60}, secret="x" * 40)
    with pytest.raises(TokenError, match="signature"):
        verifier.identify(forged)
    with pytest.raises(TokenError, match="exp"):
        verifier.identify(signed({"sub": "x", "scope": "read"}))
    with pytest.raises(TokenError):
        verifier.identify("not.a.jwt")


def test_login_issues_a_token_the_verifier_accepts(verifier: Verifier) -> None:
    identity = verifier.login("user", PASSWORD)
    token, ttl = verifier.issue(identity)
    assert ttl == 3600.0
    assert verifier.identify(token) == Identity("user", frozenset({"read", "write"}))
    with pytest.raises(TokenError, match="wrong password"):
        verifier.login("user", "wrong")
    with pytest.raises(TokenError, match="wrong password"):
        verifier.login("nobody", PASSWORD)


def test_bearer_header_is_parsed_strictly() -> None:
    assert bearer_token("Bearer abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(TokenError):
            bearer_token(bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"jwt_secret": "short"}, "jwt_secret: must be at least 32"),
        ({"api_tokens": [{"name": "a", "sha256": "abc"}]}, "sha256: must be 64"),
        ({"users": [{"username": "u", "password_hash": "md5$x"}]}, "password_hash: a pass"),
        ({"api_tokens": [{"name": "a", "sha256": "0" * 64, "scopes": ["root"]}]}, "scopes"),
        ({"token_ttl_seconds": 0.0}, "token_ttl_seconds"),
    ],
)
def test_a_bad_auth_table_names_the_key(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        auth_settings(**changes)


def test_hash_password_command_prints_a_hash_that_checks() -> None:
    cli = Path(sys.executable).with_name("metrics-mesh")
    result = subprocess.run(
        [str(cli), "auth", "hash-password"], input="s3cret\n", capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    digest = result.stdout.strip()
    assert digest.startswith("scrypt$16384$8$1$")
    assert "s3cret" not in digest
    assert check_password("s3cret", digest)
    assert not check_password("other", digest)


def test_secret_is_never_in_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        auth_settings(jwt_secret=SECRET[:20])
    assert SECRET[:20] not in str(caught.value)


# --- the aggregator's interceptor, with real gRPC clients ----------------------------------


@pytest.fixture
async def aggregator(clock: FakeClock) -> AsyncIterator[AggregatorServer]:
    """An aggregator with `[auth]`; its wall clock (token expiry) is the fake one."""
    clocks = Clocks(monotonic=time.monotonic, wall=clock)
    settings = AggregatorSettings(port=0, interval_seconds=0.2, deadline_seconds=0.15)
    async with AggregatorServer(
        Registry([]), settings, clocks=clocks, auth=auth_settings()
    ) as server:
        yield server


Metadata = tuple[tuple[str, str], ...]


def metadata(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def first_of(stream: grpc.aio.UnaryStreamCall[Any, Any]) -> object:
    async for item in stream:
        return item
    raise AssertionError("the stream ended empty")


def otlp_export(channel: grpc.aio.Channel, call_metadata: Metadata) -> Awaitable[object]:
    stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    return stub.Export(request, metadata=call_metadata)  # type: ignore[no-any-return]


CALLS: dict[str, tuple[str, Callable[[grpc.aio.Channel, Metadata], Awaitable[object]]]] = {
    "unary GetSnapshot": (
        "read",
        lambda channel, call_metadata: aggregator_pb2_grpc.AggregatorServiceStub(
            channel
        ).GetSnapshot(aggregator_pb2.GetSnapshotRequest(), metadata=call_metadata),
    ),
    "server-streaming StreamSnapshots": (
        "read",
        lambda channel, call_metadata: first_of(
            aggregator_pb2_grpc.AggregatorServiceStub(channel).StreamSnapshots(
                aggregator_pb2.StreamSnapshotsRequest(), metadata=call_metadata
            )
        ),
    ),
    "write Ingest": (
        "write",
        lambda channel, call_metadata: aggregator_pb2_grpc.AggregatorServiceStub(channel).Ingest(
            ingest_pb2.IngestRequest(), metadata=call_metadata
        ),
    ),
    "OTLP Export on the aggregator's port": ("write", otlp_export),
}
"""One call of each kind the interceptor guards: the scope it needs and how to make it."""


def token_of(case: str, needed: str) -> str | None:
    """The bearer token of `case` for a call needing the `needed` scope (None: no header)."""
    if case == "missing":
        return None
    if case == "expired":
        return signed({"sub": "ci", "scope": needed, "exp": NOW - 1})
    if case == "wrong signature":
        return signed({"sub": "ci", "scope": needed, "exp": NOW + 60}, secret="y" * 40)
    if case == "wrong scope":  # `gateway` implies nothing: neither read nor write
        lacking = "gateway" if needed == "read" else "read gateway"
        return signed({"sub": "ci", "scope": lacking, "exp": NOW + 60})
    return signed({"sub": "ci", "scope": needed, "exp": NOW + 60})


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", grpc.StatusCode.UNAUTHENTICATED),
        ("expired", grpc.StatusCode.UNAUTHENTICATED),
        ("wrong signature", grpc.StatusCode.UNAUTHENTICATED),
        ("wrong scope", grpc.StatusCode.PERMISSION_DENIED),
        ("valid", None),
    ],
)
@pytest.mark.parametrize("kind", list(CALLS))
async def test_every_kind_of_call_needs_a_valid_token_with_its_scope_and_logs_none_of_it(
    aggregator: AggregatorServer,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    case: str,
    expected: grpc.StatusCode | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    needed, call = CALLS[kind]
    token = token_of(case, needed)
    async with open_channel(aggregator.address) as channel:
        made = call(channel, () if token is None else metadata(token))
        if expected is None:
            assert await made is not None
        else:
            assert await code_of(made) == expected
    if token is not None:
        for part in (token, *token.split(".")):
            assert part not in caplog.text


async def test_writes_need_the_write_scope(aggregator: AggregatorServer) -> None:
    rule = alerts_pb2.AlertRule(name="Busy", severity="warning")
    request = alerts_pb2.CreateAlertRuleRequest(rule=rule)
    async with open_channel(aggregator.address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        call = stub.CreateAlertRule(request, metadata=metadata(READ_TOKEN))
        assert await code_of(call) == grpc.StatusCode.PERMISSION_DENIED
        # With write, the call reaches the servicer (which judges the rule itself).
        call = stub.CreateAlertRule(request, metadata=metadata(WRITE_TOKEN))
        assert await code_of(call) == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_channel_with_the_client_token_needs_nothing_else(
    aggregator: AggregatorServer,
) -> None:
    async with open_channel(
        aggregator.address, interceptors=bearer_interceptors(WRITE_TOKEN)
    ) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        assert await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest()) is not None
        stream = stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
        assert await first_of(stream)


async def test_health_stays_open_and_refusals_log_no_secret(
    aggregator: AggregatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_channel(aggregator.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        call = stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest(), metadata=metadata("guess"))
        assert await code_of(call) == grpc.StatusCode.UNAUTHENTICATED
    assert "refused /metricsmesh.v1.AggregatorService/GetSnapshot" in caplog.text
    assert "guess" not in caplog.text and SECRET not in caplog.text


async def test_the_cli_sends_the_configured_client_token(aggregator: AggregatorServer) -> None:
    cli = Path(sys.executable).with_name("metrics-mesh")
    env = {**os.environ, "METRICS_MESH_AGGREGATOR_PORT": str(aggregator.port)}
    env.pop("METRICS_MESH_AUTH_CLIENT_TOKEN", None)

    def snapshot(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cli), "snapshot", "-o", "json"], env={**env, **extra}, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip

    refused = await asyncio.to_thread(snapshot, {})
    assert refused.returncode == 1
    assert "refused the call" in refused.stderr and "client_token" in refused.stderr
    allowed = await asyncio.to_thread(snapshot, {"METRICS_MESH_AUTH_CLIENT_TOKEN": READ_TOKEN})
    assert allowed.returncode == 0, allowed.stderr


def test_es256_and_rs256_tokens_verify_with_the_public_key_file(
    tmp_path: Path, clock: FakeClock
) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"sub": "ops", "scope": "write", "exp": NOW + 60}
    clocks = Clocks(monotonic=clock, wall=clock)
    for key, algorithm in ((ec_key, "ES256"), (rsa_key, "RS256")):
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        path = tmp_path / f"{algorithm}.pem"
        path.write_bytes(pem)
        verifier = Verifier(SECTION.parse({"jwt_public_key_file": str(path)}, {}), clocks=clocks)
        token = jwt.encode(claims, key, algorithm=algorithm)
        assert verifier.identify(token) == Identity("ops", frozenset({"read", "write"}))
        # The public key is never an HMAC secret (the algorithm confusion attack).
        with pytest.raises(TokenError, match="alg value is not allowed"):
            verifier.identify(hmac_signed_with(pem, claims))
        with pytest.raises(TokenError):
            verifier.identify(signed(claims))  # HS256: no jwt_secret here


def hmac_signed_with(key: bytes, claims: dict[str, object]) -> str:
    """A HS256 JWT whose HMAC key is `key`, built by hand (pyjwt refuses PEM secrets)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(mac)}"


async def test_grpcurl_lists_freely_and_calls_with_a_bearer_header(
    aggregator: AggregatorServer,
) -> None:
    grpcurl = str(Path(sys.executable).with_name("grpcurl"))
    method = "metricsmesh.v1.AggregatorService/GetSnapshot"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [grpcurl, "-plaintext", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    listed = await asyncio.to_thread(run, aggregator.address, "list")
    assert "metricsmesh.v1.AggregatorService" in listed.stdout  # reflection stays open
    refused = await asyncio.to_thread(run, aggregator.address, method)
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr
    header = f"authorization: Bearer {READ_TOKEN}"
    allowed = await asyncio.to_thread(run, "-H", header, aggregator.address, method)
    assert allowed.returncode == 0, allowed.stderr
