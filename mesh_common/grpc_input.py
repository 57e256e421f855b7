"""Malformed gRPC requests: INVALID_ARGUMENT with a short message, not UNKNOWN and a traceback.

grpcio logs a full traceback for every request its deserializer cannot parse and hands the
handler None, which then fails with UNKNOWN. Handlers registered with `lenient(Request)`
get a `Malformed` value instead, and `abort_malformed` ends the call with INVALID_ARGUMENT
and writes at most a few log lines a minute however many such requests arrive.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from mesh_common.bounded import RateLimitedLog, quote

M = TypeVar("M", bound=Message)

_LOG = RateLimitedLog(logging.getLogger("mesh_common.grpc_input"))


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request that could not be parsed: which message it should have been, and why not."""

    message_name: str
    error: str
    size: int


def lenient(message_class: type[M]) -> Callable[[bytes], M | Malformed]:
    """A request deserializer that returns `Malformed` instead of raising."""
    name = message_class.DESCRIPTOR.full_name

    def parse(data: bytes) -> M | Malformed:
        try:
            return message_class.FromString(data)
        except (DecodeError, ValueError, RecursionError) as error:
            return Malformed(name, quote(error, 80), len(data))

    return parse


async def abort_malformed(
    request: Malformed, context: grpc.aio.ServicerContext[Any, Any]
) -> NoReturn:
    """End the call with INVALID_ARGUMENT naming the message; log rate-limited."""
    _LOG.warning(
        "malformed %s (%d bytes) from %s: %s",
        request.message_name,
        request.size,
        context.peer(),
        request.error,
    )
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"malformed request: not a valid {request.message_name} ({request.size} bytes)",
    )


def peer_host(peer: str) -> str:
    """The host of a gRPC peer: "ipv4:127.0.0.1:5000" -> "127.0.0.1", "ipv6:[::1]:5" -> "::1"."""
    kind, _, rest = urllib.parse.unquote(peer).partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")] if "]" in rest else rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer
