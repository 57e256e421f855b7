"""The tests' Server-Sent Events client: the stream's path and a parser of its events.

`events(response)` reads a streaming httpx response as a browser's EventSource would (comments
come out too, named `comment`); `take(mesh, count)` opens the gateway's stream, reads `count`
events and closes it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.gateway_mesh import Mesh

STREAM = "/api/v1/real-time-metrics/stream"


@dataclass
class Event:
    """One parsed SSE event (or a comment, with name `comment`)."""

    name: str
    id: int | None
    """The snapshot's sequence: the part of the `id:` line after the epoch."""
    data: str
    last_event_id: str | None = None
    """The `id:` line as sent (EPOCH-SEQUENCE): what a reconnecting client sends back."""

    def json(self) -> Any:
        return json.loads(self.data)


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """Parse the text/event-stream of a streaming response."""
    name, ident, data = "message", None, []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Event("comment", None, line[1:].strip())
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            sequence = None if ident is None else int(ident.rpartition("-")[2])
            yield Event(name, sequence, "\n".join(data), ident)
            name, ident, data = "message", None, []


async def take(
    mesh: Mesh, count: int, *, params: dict[str, str] | None = None, **headers: str
) -> list[Event]:
    """Open the stream, read `count` events of any kind (comments excluded), close it."""
    got: list[Event] = []
    async with mesh.http.stream("GET", STREAM, params=params, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in events(response):
            if event.name != "comment":
                got.append(event)
            if len(got) == count:
                break
    return got
