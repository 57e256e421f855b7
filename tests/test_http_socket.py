"""The gateway's HTTP socket: a response is sent at once, on either event loop.

uvicorn writes a response's headers and body apart; with Nagle's algorithm on, the body then
waits for the client's delayed ACK (40 ms on Linux). asyncio's own loop turns Nagle off only on
connections of a socket created with `IPPROTO_TCP` (uvloop on every one): `listen_http` makes it
so, and the test fleet's `free_socket` too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from mesh_common.transport import listen_http
from tests.ports import free_socket


@pytest.mark.parametrize("make", [lambda: listen_http("127.0.0.1", 0), free_socket])
async def test_a_connection_of_the_http_socket_sends_without_waiting_for_an_ack(
    make: Callable[[], socket.socket],
) -> None:
    sock = make()
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Note(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            server_side = transport.get_extra_info("socket")
            accepted.set_result(server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await asyncio.get_running_loop().create_server(Note, sock=sock)
    _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
    try:
        assert await asyncio.wait_for(accepted, 5) == 1  # Nagle off on the server's side
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
