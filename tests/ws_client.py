"""The tests' WebSocket client helpers for /ws/metrics, on a `websockets` connection.

`receive` reads the next message (a JSON object) within a timeout, `send` sends a message
(a string as it is, anything else as JSON), `until` skips messages up to one of a type.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection


async def receive(client: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    """The next message; TimeoutError when none comes within `timeout` seconds."""
    message = json.loads(await asyncio.wait_for(client.recv(), timeout))
    assert isinstance(message, dict)
    return message


async def send(client: ClientConnection, message: Any) -> None:
    """Send `message`: a string as it is, anything else as JSON."""
    await client.send(message if isinstance(message, str) else json.dumps(message))


async def until(client: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of this type (skipping others)."""
    while True:
        message = await receive(client)
        if message["type"] == kind:
            return message
