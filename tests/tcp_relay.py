"""A TCP relay on a free port that can cut its clients off while the far side stays connected.

`TcpRelay(("127.0.0.1", port))` forwards every connection to `port`; `cut()` resets the
client side of every connection so far and keeps the upstream side open, as a NAT or a load
balancer that drops a flow does: the client sees its connection lost at once, the server sees
nothing (it keeps the session until its TCP keepalive gives up). Later connections are
relayed as before. A context manager; threads, one pair per connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

from tests.ports import free_socket


class TcpRelay:
    """See the module doc."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = free_socket()
        self._listener.listen()
        self.port: int = self._listener.getsockname()[1]
        self._clients: list[socket.socket] = []
        self._kept: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._clients.append(client)
            self._kept.append(server)
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()

    def cut(self) -> None:
        """Reset every client connection so far; keep their upstream connections open."""
        clients, self._clients = self._clients, []
        for client in clients:
            # SO_LINGER 0: close() sends a reset, the client's next read or write fails.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._listener.close()
        for each in self._clients + self._kept:
            with contextlib.suppress(OSError):
                each.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy `source` to `target` until either side ends (a cut client ends only its pumps)."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
