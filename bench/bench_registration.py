"""What a registered instance costs the aggregator: the registration, and the whole instance.

python -m bench registration

Each figure is measured in a fresh process (`multiprocessing`, spawn):

- per registration: `Registrations` holding 1000 and 10,000 instances (3 per service, as
  replicas register), their fleet entries built; Python heap growth by tracemalloc.
  Baseline, same run: the least a Python store can hold, a dict from (service, address) to
  a tuple of type, data source, port and lease end.
- per registered instance in a running aggregator: RSS growth of an AggregatorServer once
  999 instances registered over gRPC have been called by a round (their channels, health
  watches and rows: an instance's whole cost). Baseline, same run: the same 999 instances
  given in its registry (as a reload of `[[services]]` instances would); the difference is
  what registering adds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import tracemalloc
from collections.abc import Callable
from typing import Any

import grpc
from metricsmesh.v1 import registration_pb2, registration_pb2_grpc

from aggregator import AggregatorServer, AggregatorSettings, Registry, ServiceEntry
from aggregator._fleet.registration import registration
from aggregator._fleet.registrations import Registrations
from aggregator._fleet.settings import DiscoverySettings
from mesh_common.clocks import Clocks

SIZES = (1000, 10_000)
INSTANCES = 999
"""333 services of 3 instances each."""
PER_SERVICE = 3
FIRST_PORT = 40_000
"""Agents at 127.0.0.1:40000 and up, where nothing is expected to listen."""


def rss() -> int:
    """This process's resident set size in bytes, after a collection."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def address(index: int) -> str:
    return f"127.0.0.1:{FIRST_PORT + index}"


def service(index: int) -> str:
    return f"service-{index // PER_SERVICE:05d}"


def held(count: int) -> tuple[int, int]:
    """Heap growth holding `count` registrations (entries built), and how many are held."""
    clocks = Clocks(monotonic=lambda: 1000.0, wall=lambda: 1_800_000_000.0)
    settings = DiscoverySettings(accept_registrations=True, max_registrations=count)
    source = Registrations(settings, clocks=clocks)
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(count):
        source.register(registration(service(index), address(index), service_type="data"))
    entries = source.entries
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert sum(len(entry.addresses) for entry in entries) == count
    return grown, len(source)


def baseline(count: int) -> tuple[int, int]:
    """Heap growth holding `count` instances as a plain dict of tuples."""
    store: dict[tuple[str, str], tuple[str, str, int, float]] = {}
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(count):
        store[(service(index), address(index))] = ("data", "", 0, 1030.0)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return grown, len(store)


def configured_registry() -> Registry:
    """The INSTANCES instances as a registry file would give them (3 per service)."""
    return Registry(
        ServiceEntry(
            service(first),
            "127.0.0.1",
            8000,
            FIRST_PORT + first,
            "data",
            instances=tuple(address(i) for i in range(first, first + PER_SERVICE)),
        )
        for first in range(0, INSTANCES, PER_SERVICE)
    )


async def register_all(server: AggregatorServer) -> None:
    """Register the INSTANCES instances over gRPC, as their agents would."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = registration_pb2_grpc.RegistrationServiceStub(channel)
        for index in range(INSTANCES):
            request = registration_pb2.RegisterRequest(
                service_name=service(index), advertised_address=address(index)
            )
            await stub.Register(request)
    await server.fleet.refresh()


async def _running(registered: bool) -> tuple[int, int]:
    settings = AggregatorSettings(
        port=0, interval_seconds=60.0, deadline_seconds=0.5, min_round_spacing_seconds=0.0
    )
    discovery = DiscoverySettings(accept_registrations=True, max_registrations=INSTANCES)
    server = AggregatorServer(Registry(), settings, discovery=discovery)
    await server.start()
    await server.loop.snapshot(max_age=0)
    before = rss()
    if registered:
        await register_all(server)
    else:
        server.loop.replace_registry(configured_registry())
    await server.loop.snapshot(max_age=0)  # the round opens their channels and calls them
    snapshot = await server.loop.snapshot(max_age=0)
    grown = rss() - before
    instances = sum(row.instances_total for row in snapshot.rows)
    await server.stop(0)
    return grown, instances


def running(registered: bool) -> tuple[int, int]:
    """RSS growth of an aggregator holding INSTANCES instances, registered or configured."""
    logging.disable(logging.WARNING)  # a status line per service that nobody answers for
    return asyncio.run(_running(registered))


def _child(function: Callable[..., Any], args: tuple[Any, ...], queue: Any) -> None:
    queue.put(function(*args))


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` run in a fresh (spawned) process; its result."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(function, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    """Print the bytes per registration (and the baseline's), then per running instance."""
    for count in SIZES:
        grown, kept = in_fresh_process(held, count)
        base, base_kept = in_fresh_process(baseline, count)
        print(
            f"per registration, {kept} held: {grown / kept:6.0f} B; baseline (a dict of "
            f"tuples) {base / base_kept:4.0f} B -> x{grown / kept / (base / base_kept):.1f}"
        )
    configured, total = in_fresh_process(running, False)
    registered, registered_total = in_fresh_process(running, True)
    print(
        f"per instance in a running aggregator ({total} instances, a round called): "
        f"configured {configured / total / 1024:5.1f} KiB, registered "
        f"{registered / registered_total / 1024:5.1f} KiB (RSS; x{registered / configured:.2f})"
    )


if __name__ == "__main__":
    main()
