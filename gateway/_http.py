"""uvicorn's httptools protocol with the limits it lacks: header size, header time, connections.

`guarded_protocol(settings)` is the `http=` class `gateway.__main__` runs uvicorn with:

- a connection beyond `max_connections` (HTTP, SSE and WebSocket connections together) gets
  an immediate 503 and is closed, so idle sockets cannot use up the file descriptors;
- a request line plus headers larger than `max_header_bytes` gets 431 and the connection
  is closed, before the bytes pile up in memory (also a request pipelined behind a response
  still under way, e.g. an SSE stream: that connection is closed without an answer);
- a connection has `header_timeout_seconds` to send a request's headers, from its opening
  and again after each response: a slow-header (slowloris) connection gets 408; an idle one
  is just closed, once it has had a response after uvicorn's keep-alive timeout if shorter.

Each refusal is logged, rate-limited (`mesh_common.bounded.RateLimitedLog`).

The per-request cost is a few attribute writes (bench/bench_gateway.py: the bare app under
this protocol against uvicorn's own): header bytes are counted per read, not per header line,
and one `DeadlineSweep` per server looks at the connections' deadlines a few times a second
instead of a timer armed and cancelled per request (uvicorn's keep-alive timer is replaced
too). Counted in-process (callgrind), the protocol's cost over uvicorn's own went from about
23k to 4k instructions per request (of about 100k).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway._settings import GatewaySettings
from mesh_common.bounded import RateLimitedLog

_LOG = RateLimitedLog(logging.getLogger("gateway.http"))
_NEVER = math.inf
_UNCOUNTED = sys.maxsize
"""The header byte budget while a request's body is read: body bytes are not header bytes."""
MAX_SWEEP_SECONDS = 1.0
SWEEP_FRACTION = 10
"""The sweep runs every shortest timeout / SWEEP_FRACTION seconds, MAX_SWEEP_SECONDS at most."""


def _response(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class DeadlineSweep:
    """Every `period` seconds, expires the watched connections whose deadline has passed.

    One per server (one protocol class). The period is a tenth of the shortest timeout of
    the connections (header or keep-alive), at most a second: a deadline is acted on at
    most that late, never early. The timer runs only while a connection is watched.
    """

    def __init__(self) -> None:
        self.period = MAX_SWEEP_SECONDS
        self._watched: set[GuardedHttpToolsProtocol] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, connection: GuardedHttpToolsProtocol) -> None:
        """Look at `connection`'s deadline from now on."""
        self._watched.add(connection)
        if self._timer is None:
            self.period = min(MAX_SWEEP_SECONDS, connection.shortest_timeout / SWEEP_FRACTION)
            self._loop = connection.loop
            self._timer = connection.loop.call_later(self.period, self._sweep)

    def forget(self, connection: GuardedHttpToolsProtocol) -> None:
        """Stop looking at `connection` (closed, or handed over to the WebSocket protocol)."""
        self._watched.discard(connection)
        if not self._watched and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for connection in [c for c in self._watched if c.deadline <= now]:
            connection.expire()
        self._timer = self._loop.call_later(self.period, self._sweep) if self._watched else None


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus the connection cap, header size limit and header timeout.

    Header bytes: every read counts against `max_header_bytes` from the read after the one
    in which the previous request ended (so at most one read past the limit is buffered);
    when the head completes, it is measured exactly only if those reads, plus the one the
    head may have started in, exceed the limit.
    """

    max_connections = 1000
    max_header_bytes = 16384
    header_timeout = 10.0
    sweep = DeadlineSweep()
    """Replaced by one per class in `guarded_protocol`: one per server."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = _NEVER
        """Loop time at which `expire()` is due (the sweep calls it); never while answering."""
        self._head_deadline = _NEVER
        """Loop time by which the next request's headers must be in."""
        self._idle = True
        """Nothing received since the connection opened or the last response."""
        self.shortest_timeout = min(self.timeout_keep_alive, self.header_timeout)
        """Seconds an idle connection stays open after a response: uvicorn's keep-alive
        timeout, or the header timeout if shorter."""
        self._budget = self.max_header_bytes
        """Header bytes the current head may still take (counted per read)."""
        self._slack = 0
        """Size of the read the current head may have started in (not counted)."""
        self._read_size = 0
        self._refused = False

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
        self.deadline = self._head_deadline = self.loop.time() + self.header_timeout
        self.sweep.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the header clock."""
        self.sweep.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count the read against the header budget; 431 once an unfinished head is over it."""
        size = self._read_size = len(data)
        self._budget -= size
        if self._idle:
            self._idle = False
            self.deadline = self._head_deadline
        super().data_received(data)
        if self._budget < 0 and not (self._refused or self.transport.is_closing()):
            self._too_large()

    def on_headers_complete(self) -> None:
        """The headers are in: 431 if they were too big, else stop the clock and go on."""
        if self._refused:
            return
        if self._budget < self._slack and self._head_size() > self.max_header_bytes:
            self._too_large()
            return
        self._budget = _UNCOUNTED
        self.deadline = _NEVER
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Ignore the body of a refused request."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The next head starts in this read, after this request: count it from the next read."""
        self._budget = self.max_header_bytes
        self._slack = self._read_size
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        """Wait for the next request's headers, with the clock running again.

        uvicorn's own, without its keep-alive timer (the sweep closes idle connections).
        """
        if self.pipeline or self.transport.is_closing():
            super().on_response_complete()  # the next request was in: no timer is armed
            return
        self.server_state.total_requests += 1
        self.flow.resume_reading()
        now = self.loop.time()
        self.deadline = now + self.shortest_timeout
        self._head_deadline = now + self.header_timeout
        self._idle = True

    def handle_websocket_upgrade(self) -> None:
        """Hand the connection over to the WebSocket protocol, without our clock."""
        self.sweep.forget(self)
        self.deadline = _NEVER
        super().handle_websocket_upgrade()

    def expire(self) -> None:
        """The deadline has passed: close an idle connection, 408 for an unfinished head."""
        self.deadline = _NEVER
        if self._idle:
            self.transport.close()  # idle: nothing to answer
            return
        _LOG.warning("closed a connection from %s: headers not complete in time", self.client)
        self._refuse(
            "408 Request Timeout",
            f"request headers not received within {self.header_timeout:g} s "
            "(header_timeout_seconds)",
        )

    def _head_size(self) -> int:
        """The URL and headers just parsed (values as uvicorn keeps them: no trailing blanks)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _too_large(self) -> None:
        _LOG.warning(
            "refused request headers over %d bytes from %s", self.max_header_bytes, self.client
        )
        self._refuse(
            "431 Request Header Fields Too Large",
            f"request line and headers exceed {self.max_header_bytes} bytes (max_header_bytes)",
        )

    def _refuse(self, status: str, text: str) -> None:
        """Answer `status` and close; just close while a response is under way."""
        self.deadline = _NEVER
        self._refused = True
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_response(status, text))
        self.transport.close()


def guarded_protocol(settings: GatewaySettings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with the limits of `settings`.

    Each call makes a new class with its own `DeadlineSweep`: use one per server.
    """
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_connections": settings.max_connections,
            "max_header_bytes": settings.max_header_bytes,
            "header_timeout": settings.header_timeout_seconds,
            "sweep": DeadlineSweep(),
        },
    )
