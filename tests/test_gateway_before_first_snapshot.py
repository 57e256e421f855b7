"""Filters sent to a gateway that has no snapshot yet: checked once the first one arrives.

Before its first snapshot the gateway cannot know the fleet's names; a typo must still not
end as a silently empty fleet. The gateway here starts alone and the aggregator later.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from tests.gateway_mesh import Mesh
from tests.sse_client import STREAM, events
from tests.ws_client import receive, send, until

# The gateway starts alone (503: the state these tests start from); they start the aggregator.
pytestmark = pytest.mark.mesh(aggregator_first=False)


async def test_ws_names_set_before_the_first_snapshot_are_checked_when_it_comes(
    mesh: Mesh,
) -> None:
    async with connect(mesh.ws_url) as client:
        await receive(client)  # welcome
        await send(client, {"type": "subscribe", "metric_types": ["agent"]})
        await until(client, "subscription_confirmed")
        filters = {"agent_ids": ["agent_1", "weather-api"]}
        await send(client, {"type": "set_filters", "filters": filters})
        early = await until(client, "filters_updated")
        assert early["applied"]["service_names"] == ["agent_1", "weather-api"]  # unchecked
        await mesh.start_aggregator()
        late = await until(client, "filters_updated")
        assert late["rechecked"] is True and late["filters"] == filters
        assert late["applied"]["service_names"] == ["weather-api"]
        (ignored,) = late["ignored"]
        assert ignored["agent_id"] == "agent_1"
        assert ignored["reason"].startswith("no such service; known: admin-api, ")
        update = await until(client, "metric_update")  # one agent item: weather-api's row
        assert update["data"]["data"]["service_name"] == "weather-api"


async def test_ws_seed_agent_ids_sent_early_end_as_the_whole_fleet_not_an_empty_one(
    mesh: Mesh,
) -> None:
    async with connect(mesh.ws_url) as client:
        await receive(client)
        await send(client, {"type": "subscribe", "metric_types": ["agent"]})
        await send(client, {"type": "set_filters", "filters": {"agent_ids": ["agent_1"]}})
        await until(client, "filters_updated")
        await mesh.start_aggregator()
        late = await until(client, "filters_updated")
        assert late["applied"]["service_names"] == []
        batch = await until(client, "metric_batch")
        assert batch["count"] == 15


async def test_sse_with_an_unknown_name_before_the_first_snapshot_ends_with_a_422_event(
    mesh: Mesh,
) -> None:
    params = {"services": "weathr-api"}
    async with mesh.http.stream("GET", STREAM, params=params) as response:
        assert response.status_code == 200  # nothing to check the name against yet
        await mesh.start_aggregator()
        got = [event async for event in events(response) if event.name != "comment"]
    assert [event.name for event in got][-1] == "error"  # and the stream ended
    error = got[-1].json()
    assert error["status"] == 422
    assert error["detail"].startswith("unknown service name 'weathr-api'; known: admin-api, ")
    assert not [event for event in got if event.name == "snapshot"]
    # The client's reconnect now gets the same verdict at once.
    again = await mesh.http.get(STREAM, params=params)
    assert again.status_code == 422 and "weathr-api" in again.json()["detail"]


async def test_sse_with_a_known_name_before_the_first_snapshot_streams_it(mesh: Mesh) -> None:
    params = {"services": "weather-api"}
    async with mesh.http.stream("GET", STREAM, params=params) as response:
        await mesh.start_aggregator()

        async def first_snapshot() -> dict[str, object]:
            async for event in events(response):
                if event.name == "snapshot":
                    body: dict[str, object] = event.json()
                    return body
            raise AssertionError("the stream ended")

        body = await asyncio.wait_for(first_snapshot(), 10)
    rows = [*body["active_apis"], *body["inactive_services"]]  # type: ignore[misc]
    assert [row["service_name"] for row in rows] == ["weather-api"]


async def test_ws_an_alerts_only_client_gets_its_early_filters_rechecked(mesh: Mesh) -> None:
    async with connect(mesh.ws_url) as client:
        await receive(client)
        await send(client, {"type": "subscribe", "data": {"subscription": "alerts"}})
        await send(client, {"type": "set_filters", "filters": {"agent_ids": ["weathr-api"]}})
        await until(client, "filters_updated")
        await mesh.start_aggregator()
        late = await until(client, "filters_updated")
        assert late["rechecked"] is True and late["applied"]["service_names"] == []
        assert [entry["agent_id"] for entry in late["ignored"]] == ["weathr-api"]


async def test_ws_many_early_filters_end_as_the_last_one_sent(mesh: Mesh) -> None:
    async with connect(mesh.ws_url) as client:
        await receive(client)
        sent = [{"agent_ids": ["agent_1"]}] * 33 + [{"agent_ids": ["weather-api"]}]
        for filters in sent:
            await send(client, {"type": "set_filters", "filters": filters})
        for _ in sent:
            await until(client, "filters_updated")
        await mesh.start_aggregator()
        late = await until(client, "filters_updated")
        assert late["rechecked"] is True and late["filters"] == sent[-1]
        assert late["applied"]["service_names"] == ["weather-api"]
        assert [entry["agent_id"] for entry in late["ignored"]] == ["agent_1"]  # listed once
