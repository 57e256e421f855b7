"""uvicorn's httptools protocol with the limits it lacks: header size, header time, connections.

`guarded_protocol(settings)` is the `http=` class `gateway.__main__` runs uvicorn with:

- a connection beyond `max_connections` (HTTP, SSE and WebSocket connections together) gets
  an immediate 503 and is closed, so idle sockets cannot use up the file descriptors;
- a request line plus headers larger than `max_header_bytes` gets 431 and the connection
  is closed, before the bytes pile up in memory;
- a connection has `header_timeout_seconds` to send a request's headers, from its opening
  and again after each response: an idle or slow-header (slowloris) connection gets 408, or
  is just closed when it sent nothing.

Each refusal is logged, rate-limited (`mesh_common.bounded.RateLimitedLog`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway._settings import GatewaySettings
from mesh_common.bounded import RateLimitedLog

_LOG = RateLimitedLog(logging.getLogger("gateway.http"))


def _response(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus the connection cap, header size limit and header timeout."""

    max_connections = 1000
    max_header_bytes = 16384
    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        """Bytes received while the current request's headers are incomplete."""
        self._header_size = 0
        """Size of the current request's line and headers, as parsed."""
        self._awaiting_headers = True
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse the connection beyond the cap; else start the header clock."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            _LOG.warning(
                "refused a connection from %s: %d open, the limit is %d (max_connections)",
                self.client,
                len(self.connections) - 1,
                self.max_connections,
            )
            self._refuse(
                "503 Service Unavailable",
                f"too many connections: the limit is {self.max_connections} (max_connections)",
            )
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the header clock."""
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count header bytes while a request's headers are incomplete; 431 beyond the limit."""
        if self._refused:
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._awaiting_headers and self._header_bytes > self.max_header_bytes:
            self._too_large()

    def on_message_begin(self) -> None:
        """A new request: its header size starts at zero."""
        self._header_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        """Count the request line."""
        self._header_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count each header."""
        self._header_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The headers are in: 431 if they were too big, else stop the clock and go on."""
        self._awaiting_headers = False
        self._header_bytes = 0
        self._disarm_header_timer()
        if self._header_size > self.max_header_bytes:
            self._too_large()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Ignore the body of a refused request."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """Ignore the end of a refused request."""
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        """Wait for the next request's headers (with the clock running again)."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._awaiting_headers = True
            self._header_bytes = 0
            self._arm_header_timer()

    def handle_websocket_upgrade(self) -> None:
        """Hand the connection over to the WebSocket protocol, without our clock."""
        self._disarm_header_timer()
        self._awaiting_headers = False
        super().handle_websocket_upgrade()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self._header_bytes == 0:
            self.transport.close()  # idle: nothing to answer
            return
        _LOG.warning("closed a connection from %s: headers not complete in time", self.client)
        self._refuse(
            "408 Request Timeout",
            f"request headers not received within {self.header_timeout:g} s "
            "(header_timeout_seconds)",
        )

    def _too_large(self) -> None:
        _LOG.warning(
            "refused request headers over %d bytes from %s", self.max_header_bytes, self.client
        )
        self._refuse(
            "431 Request Header Fields Too Large",
            f"request line and headers exceed {self.max_header_bytes} bytes (max_header_bytes)",
        )

    def _refuse(self, status: str, text: str) -> None:
        self._disarm_header_timer()
        self._awaiting_headers = False
        self._refused = True
        if not self.transport.is_closing():
            self.transport.write(_response(status, text))
            self.transport.close()


def guarded_protocol(settings: GatewaySettings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with the limits of `settings`."""
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_connections": settings.max_connections,
            "max_header_bytes": settings.max_header_bytes,
            "header_timeout": settings.header_timeout_seconds,
        },
    )
