"""Single-use stream tickets: how a browser holding a bearer token opens EventSource and WebSocket.

EventSource and WebSocket cannot send an `Authorization` header, and a long-lived token in a
URL ends up in logs and histories. So a page that holds a token (an API token pasted into the
dashboard) asks for a ticket first, with the header:

    POST /auth/ticket   Authorization: Bearer <token>      (the `read` scope)
    {"ticket": "Vq3...", "expires_in": 30}

and opens the stream with it: `/api/v1/real-time-metrics/stream?ticket=Vq3...` or
`/ws/metrics?ticket=Vq3...`. The auth check (gateway._auth) accepts `?ticket=` on those two
stream paths only (GET and WebSocket upgrades, never a write, never another route), with the
identity the ticket was issued to. A ticket is good once, for `TICKET_SECONDS`: spent, expired
or unknown, it is a 401 (a WebSocket is closed with 1008 before the upgrade). A page that
logged in (`POST /auth/login`) needs no ticket: its HttpOnly cookie rides on the streams.

Tickets live in the gateway's memory, bounded: at most `MAX_TICKETS_PER_IDENTITY` unspent
tickets per identity (429 past it) and `MAX_TICKETS` in all (503 past it), about 250 bytes
each, with `Retry-After` saying when the oldest runs out. A restart forgets them (a page asks
again). Times are read from the injected monotonic clock.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter, OrderedDict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway._errors import TicketLimitError
from gateway._login import request_identity
from mesh_common.auth import Identity
from mesh_common.clocks import ReadClock
from mesh_common.errors import TokenError

PATH = "/auth/ticket"
"""Where tickets are issued."""
QUERY = "ticket"
"""The query parameter a stream URL carries its ticket in."""
TICKET_SECONDS = 30.0
"""How long a ticket may wait to be used: enough for a page to open its stream, no more."""
MAX_TICKETS = 4096
"""Unspent tickets kept in all (about 250 bytes each, 1 MB); 503 past it."""
MAX_TICKETS_PER_IDENTITY = 32
"""Unspent tickets of one identity; 429 past it, so that one token cannot take every place."""
NO_STORE = {"cache-control": "no-store"}


class TicketBook:
    """The unspent tickets: `issue(identity)` one, `redeem(ticket)` it once within its time.

    Every ticket lives as long, so the book is in issue order and the oldest run out first:
    expired ones are dropped from its front on each call, in constant time per ticket.
    """

    def __init__(
        self,
        monotonic: ReadClock,
        *,
        seconds: float = TICKET_SECONDS,
        capacity: int = MAX_TICKETS,
        per_identity: int = MAX_TICKETS_PER_IDENTITY,
    ) -> None:
        self.seconds = seconds
        self._monotonic = monotonic
        self._capacity = capacity
        self._per_identity = per_identity
        self._tickets: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        """Ticket -> (its identity, when it runs out), oldest first."""
        self._held: Counter[str] = Counter()
        """Unspent tickets per identity name."""

    def issue(self, identity: Identity) -> str:
        """A new ticket for `identity`; TicketLimitError when too many are unspent."""
        now = self._monotonic()
        self._drop_expired(now)
        if self._held[identity.name] >= self._per_identity:
            raise TicketLimitError(
                429,
                f"{identity.name!r} holds {self._per_identity} unspent stream tickets, the "
                "most one identity may; use them or let them expire",
                self._retry_after(now, identity.name),
            )
        if len(self._tickets) >= self._capacity:
            raise TicketLimitError(
                503,
                f"the gateway holds {self._capacity} unspent stream tickets, its limit; retry "
                "later",
                self._retry_after(now, None),
            )
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = (identity, now + self.seconds)
        self._held[identity.name] += 1
        return ticket

    def redeem(self, ticket: str) -> Identity:
        """The identity `ticket` was issued to, spending it; TokenError when it is not valid."""
        self._drop_expired(self._monotonic())
        entry = self._tickets.pop(ticket, None)
        if entry is None:
            raise TokenError("the stream ticket is unknown, expired or already used; get a new one")
        identity, _ = entry
        self._release(identity.name)
        return identity

    def _drop_expired(self, now: float) -> None:
        while self._tickets:
            ticket, (identity, expires_at) = next(iter(self._tickets.items()))
            if expires_at > now:
                return
            del self._tickets[ticket]
            self._release(identity.name)

    def _release(self, name: str) -> None:
        self._held[name] -= 1
        if self._held[name] <= 0:
            del self._held[name]

    def _retry_after(self, now: float, name: str | None) -> int:
        """Whole seconds until the oldest ticket (of `name`, or of anyone) runs out."""
        for identity, expires_at in self._tickets.values():
            if name is None or identity.name == name:
                return max(1, math.ceil(expires_at - now))
        return 1


class TicketOut(BaseModel):
    """A single-use ticket for one stream."""

    ticket: str = Field(description="append as `?ticket=...` to the SSE or WebSocket URL")
    expires_in: int = Field(description="seconds it may wait to be used (once)")


def ticket_router(book: TicketBook) -> APIRouter:
    """The `POST /auth/ticket` route (module docstring); only with `[auth]` on."""
    router = APIRouter(tags=["auth"])

    @router.post(
        PATH,
        response_model=TicketOut,
        summary="A single-use ticket for an SSE or WebSocket stream",
        responses={
            401: {"description": "no bearer token in the Authorization header, or a bad one "
                  "(the login cookie does not get tickets)"},
            429: {"description": "this identity holds too many unspent tickets (Retry-After)"},
            503: {"description": "the gateway holds too many unspent tickets (Retry-After)"},
        },
    )  # fmt: skip
    async def ticket(request: Request) -> JSONResponse:
        """A ticket for `?ticket=` on `GET /api/v1/real-time-metrics/stream` or `/ws/metrics`.

        Needs `Authorization: Bearer` with the `read` scope. The ticket speaks for the same
        identity, is good for one connection and runs out after `expires_in` seconds (30);
        a spent, expired or unknown ticket is a 401. For browsers, whose EventSource and
        WebSocket cannot send headers: no long-lived token goes into a URL.
        """
        try:
            issued = book.issue(request_identity(request))
        except TicketLimitError as error:
            headers = {**NO_STORE, "retry-after": str(error.retry_after)}
            return JSONResponse({"detail": str(error)}, error.status, headers=headers)
        body = TicketOut(ticket=issued, expires_in=int(book.seconds))
        return JSONResponse(body.model_dump(), headers=NO_STORE)

    return router
