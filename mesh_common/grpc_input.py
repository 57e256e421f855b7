"""Malformed gRPC requests: INVALID_ARGUMENT with a short message, not UNKNOWN and a traceback.

grpcio logs a full traceback for every request its deserializer cannot parse and hands the
handler None, which then fails with UNKNOWN. Handlers registered with `lenient(Request)`
get a `Malformed` value instead, and `abort_malformed` ends the call with INVALID_ARGUMENT
and writes at most a few log lines a minute however many such requests arrive.

`service_handler` builds a whole service's handler from its descriptor (the contract): each
method's cardinality (unary or streaming) and message types come from the .proto, every
request is parsed leniently, and a method without an implementation is an error at start-up,
not UNIMPLEMENTED at run time.
"""

from __future__ import annotations

import inspect
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from mesh_common.addresses import split_host_port
from mesh_common.bounded import RateLimitedLog, quote

M = TypeVar("M", bound=Message)

Context = grpc.aio.ServicerContext[Any, Any]
Implementation = Callable[[Any, Context], Any]
"""An async function (unary method), or for a server-streaming method an async generator or
an async function that sends with `await context.write(...)`."""

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
    family, _, rest = urllib.parse.unquote(peer).partition(":")
    if family in ("ipv4", "ipv6"):
        return split_host_port(rest)[0] or rest
    return peer


def service_handler(
    service: ServiceDescriptor,
    implementations: Mapping[str, Implementation],
    *,
    serialized: Collection[str] = (),
) -> grpc.GenericRpcHandler:
    """One handler for every method of `service`, each implemented by `implementations[name]`.

    Names are the .proto's method names. A method of the service left without an
    implementation, or an implementation of no such method, is a ValueError. Requests are
    parsed leniently: a malformed one ends the call with INVALID_ARGUMENT before the
    implementation runs. Methods listed in `serialized` return (or yield) bytes that are
    already the serialized response, sent as they are.
    """
    methods = {method.name: method for method in service.methods}
    missing = sorted(set(methods) - set(implementations))
    extra = sorted(set(implementations) - set(methods))
    if missing or extra:
        raise ValueError(
            f"{service.full_name}: "
            + "; ".join(
                part
                for part in (
                    f"no implementation of {', '.join(missing)}" if missing else "",
                    f"no such method {', '.join(extra)}" if extra else "",
                )
                if part
            )
        )
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, method in methods.items():
        if method.client_streaming:
            raise ValueError(f"{service.full_name}.{name}: client streaming is not supported")
        request_class = GetMessageClass(method.input_type)
        response_class = GetMessageClass(method.output_type)
        serializer = _passthrough if name in serialized else response_class.SerializeToString
        implementation = implementations[name]
        if method.server_streaming:
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                _streaming(implementation),
                request_deserializer=lenient(request_class),
                response_serializer=serializer,
            )
        else:
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                _unary(implementation),
                request_deserializer=lenient(request_class),
                response_serializer=serializer,
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _unary(implementation: Implementation) -> Implementation:
    async def call(request: Any, context: Context) -> Any:
        if isinstance(request, Malformed):
            await abort_malformed(request, context)
        return await implementation(request, context)

    return call


def _streaming(implementation: Implementation) -> Implementation:
    if inspect.iscoroutinefunction(implementation):
        return _unary(implementation)  # it writes its responses itself

    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(request, Malformed):
            await abort_malformed(request, context)
        async for response in implementation(request, context):
            yield response

    return call


def _passthrough(message: bytes) -> bytes:
    return message
