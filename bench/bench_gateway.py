"""Gateway benchmarks: the REST endpoint under 50 connections, and 1000 SSE clients.

python -m bench gateway                      # both parts (about three minutes)
python -m bench.bench_gateway rest | sse     # one part

Every part runs in separate processes: a fleet (15 agents recording events + the aggregator),
the gateway started exactly as users start it (`python -m gateway`: uvicorn, uvloop, httptools,
no access log), and the load generator (wrk, or a process of asyncio raw-socket SSE clients).

REST baselines, measured in the same run, served the same way (uvicorn uvloop+httptools, no
access log, own process), with the same body: a naive FastAPI route returning the gateway's
REST body as a dict, re-read from the gateway once per snapshot interval:
  (a) `naive-default`: no response model, FastAPI's default encoding path (jsonable_encoder);
  (b) `naive-model`: `response_model=Dict[str, Any]`, as story 23.2's snippet declares it;
and the floor: a bare ASGI app (no framework) answering every request with the gateway's REST
body bytes, read once from the gateway:
  (c) `floor`: under uvicorn's own httptools protocol: the server with no application work;
  (d) `floor, guarded protocol`: under the gateway's `gateway._http` protocol with the bench's
      settings, so the protocol's own cost (connection cap, header limits and timeout) shows.
Targets: gateway >= 4x (a)'s requests/s and >= 0.8x (c)'s, p99 <= 15 ms. Each row also gives
the server process's CPU time per request (Linux /proc), steadier than requests/s while
other work shares the machine.
SSE: delivery lag = the moment a client reads an event - the end of its round (timestamp +
collection_time_ms), 1 client (baseline) then 1000 clients; target p99 <= 200 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

PYTHON = sys.executable
REST_PATH = "/api/v1/real-time-metrics"
WRK_SECONDS = 10
CLOSE_RUNS = 2
"""wrk runs of the floors and the gateway (their ratio is the close one), alternating."""
SSE_CLIENTS = 1000
SSE_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------------- the fleet process


def _fleet(interval: float, conn: Connection) -> None:
    asyncio.run(_fleet_main(interval, conn))


async def _fleet_main(interval: float, conn: Connection) -> None:
    import dataclasses

    from agent import AgentServer, EventTracker
    from aggregator import DEFAULT_REGISTRY, AggregatorServer, AggregatorSettings, Registry

    agents, entries = [], []
    for entry in DEFAULT_REGISTRY:
        agent = AgentServer(EventTracker(entry.name))
        await agent.start()
        agents.append(agent)
        entries.append(dataclasses.replace(entry, host="127.0.0.1", agent_port=agent.port))
    settings = AggregatorSettings(port=0, interval_seconds=interval, deadline_seconds=interval / 2)
    aggregator = AggregatorServer(Registry(entries), settings)
    await aggregator.start()

    async def traffic() -> None:  # every service busy at its own pace
        while True:
            for index, agent in enumerate(agents):
                agent.tracker.record(n=index + 1)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(traffic())
    conn.send(aggregator.address)
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    task.cancel()
    await aggregator.stop(0)
    for agent in agents:
        await agent.stop(0)


@contextlib.contextmanager
def fleet(interval: float) -> Iterator[str]:
    """A fleet process; yields the aggregator's address."""
    with spawned(_fleet, (interval,), "the fleet") as address:
        yield address


@contextlib.contextmanager
def spawned(target: Any, args: tuple[Any, ...], what: str) -> Iterator[Any]:
    """`target(*args, pipe)` in a spawned process; yields what it first sends on the pipe.

    On exit it sends "stop" and waits, then kills the process if it is still running.
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(*args, child), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError(f"{what} did not start within 30 s")
        yield parent.recv()
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(15)
        if process.is_alive():
            process.kill()


# ------------------------------------------------------------------- the HTTP servers


BENCH_LIMITS = {
    # The load is the point here: lift the per-client REST rate limit (wrk is one client) and
    # make room for the 1000 SSE clients.
    "METRICS_MESH_GATEWAY_RATE_LIMIT_PER_SECOND": "0",
    "METRICS_MESH_GATEWAY_MAX_SSE_CLIENTS": str(SSE_CLIENTS + 100),
    "METRICS_MESH_GATEWAY_MAX_CONNECTIONS": str(2 * SSE_CLIENTS + 200),
}


class Served(NamedTuple):
    """A server process of the bench: its port and process id."""

    port: int
    pid: int


@contextlib.contextmanager
def gateway(
    aggregator: str, *, config: str | None = None, https: ssl.SSLContext | None = None
) -> Iterator[Served]:
    """`python -m gateway` in its own process, once it is ready.

    `config` is a mesh file to read (its `[tls]`, for bench_tls); with `https`, the context
    to check its readiness over HTTPS with.
    """
    os.environ.update(BENCH_LIMITS)
    port = free_port()
    command = [PYTHON, "-m", "gateway", "--port", str(port), "--aggregator", aggregator]
    command += ["--config", config] if config else []
    with _process([*command, "--log-level", "warning"], port, "/health/ready", https) as process:
        yield Served(port, process.pid)


def _naive(port: int, source: str) -> None:
    """The baseline: a naive FastAPI app returning the body of `source` (a URL) as a dict."""
    from typing import Any as AnyType

    import httpx
    import uvicorn
    from fastapi import FastAPI, Response

    latest: dict[str, AnyType] = {}

    async def follow() -> None:  # the same body as the gateway's, as a plain dict
        async with httpx.AsyncClient() as client:
            while True:
                response = await client.get(source)
                if response.status_code == 200:
                    latest["body"] = response.json()
                await asyncio.sleep(1.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(follow())
        yield
        task.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.get("/ready")
    async def ready() -> Response:
        return Response(status_code=200 if "body" in latest else 503)

    @app.get(REST_PATH)
    async def naive_default():
        return latest["body"]

    @app.get("/model" + REST_PATH, response_model=dict[str, AnyType])
    async def naive_model():
        return latest["body"]

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


@contextlib.contextmanager
def naive(gateway_port: int) -> Iterator[Served]:
    """The baseline in its own process, serving the body of the gateway on `gateway_port`."""
    port = free_port()
    source = f"http://127.0.0.1:{gateway_port}{REST_PATH}"
    code = f"from bench.bench_gateway import _naive; _naive({port}, {source!r})"
    with _process([PYTHON, "-c", code], port, "/ready") as process:
        yield Served(port, process.pid)


def _floor(port: int, source: str, guarded: bool) -> None:
    """The floor: a bare ASGI app answering every request with the body of `source` (a URL)."""
    import uvicorn

    from gateway._http import guarded_protocol
    from gateway._settings import load_settings

    with urllib.request.urlopen(source, timeout=10) as response:
        body: bytes = response.read()
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
    }
    message = {"type": "http.response.body", "body": body}

    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start)
        await send(message)

    uvicorn.run(
        bare,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=guarded_protocol(load_settings(None)) if guarded else "httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


@contextlib.contextmanager
def floor(gateway_port: int, *, guarded: bool) -> Iterator[Served]:
    """The floor in its own process, serving the body of the gateway on `gateway_port`."""
    port = free_port()
    source = f"http://127.0.0.1:{gateway_port}{REST_PATH}"
    code = f"from bench.bench_gateway import _floor; _floor({port}, {source!r}, {guarded})"
    with _process([PYTHON, "-c", code], port, "/ready") as process:
        yield Served(port, process.pid)


@contextlib.contextmanager
def _process(
    command: list[str], port: int, ready_path: str, https: ssl.SSLContext | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"{'https' if https else 'http'}://127.0.0.1:{port}{ready_path}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited with {process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2, context=https):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[:3]} not ready on port {port}") from None
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


# ------------------------------------------------------------------- REST with wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: int, connections: int = 50, pid: int | None = None) -> dict[str, float]:
    """Run wrk; requests/s, latency percentiles in ms and, given the server's `pid`, the
    server's CPU time per request in microseconds (`cpu_us`, 0 where /proc is missing)."""
    cpu_before = _cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = _cpu_seconds(pid) - cpu_before
    figures: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        figures[f"p{pct}"] = float(value) * _UNITS[unit]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non2xx"] = float(bad[1]) if bad else 0.0
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    figures["cpu_us"] = cpu / requests * 1e6 if requests else 0.0
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"  wrk socket errors for {url}: {errors[1]}")
    return figures


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` so far (0 without /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


NAIVE_DEFAULT = "naive-default (FastAPI dict, jsonable_encoder)"
NAIVE_MODEL = "naive-model (response_model=Dict[str, Any])"
FLOOR = "floor (bare ASGI, uvicorn httptools)"
FLOOR_GUARDED = "floor, guarded protocol (bare ASGI)"
GATEWAY = "gateway (cached bytes, ASGI fast path)"


def bench_rest() -> None:
    if shutil.which("wrk") is None:
        print("rest: skipped, `wrk` is not installed (Debian package wrk)")
        return
    print(
        f"REST {REST_PATH}: wrk -t2 -c50 -d{WRK_SECONDS}s --latency, 15 services, "
        f"{os.cpu_count()} CPUs shared by server, wrk and the fleet; the floors and the "
        f"gateway: fastest of {CLOSE_RUNS} alternating runs; CPU us/req: the server process's "
        "CPU time per request (steadier than req/s on a busy machine)"
    )
    with (
        fleet(1.0) as address,
        gateway(address) as gw,
        naive(gw.port) as baseline,
        floor(gw.port, guarded=False) as bare,
        floor(gw.port, guarded=True) as guarded,
    ):
        targets = {
            NAIVE_DEFAULT: (baseline, REST_PATH),
            NAIVE_MODEL: (baseline, "/model" + REST_PATH),
            FLOOR: (bare, REST_PATH),
            FLOOR_GUARDED: (guarded, REST_PATH),
            GATEWAY: (gw, REST_PATH),
        }
        urls = {
            name: f"http://127.0.0.1:{server.port}{path}"
            for name, (server, path) in targets.items()
        }
        results: dict[str, dict[str, float]] = {}
        for url in urls.values():
            wrk(url, 2)  # warm-up
        # The floors and the gateway alternate, each keeping its fastest run: a busy machine
        # only ever slows a run down, and no one of them gets all the quiet moments.
        for name in [NAIVE_DEFAULT, NAIVE_MODEL] + CLOSE_RUNS * [FLOOR, FLOOR_GUARDED, GATEWAY]:
            figures = wrk(urls[name], WRK_SECONDS, pid=targets[name][0].pid)
            if name not in results or figures["rps"] > results[name]["rps"]:
                results[name] = figures
    head = ("req/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx", "CPU us/req")
    print(f"  {'server':48} " + " ".join(f"{word:>8}" for word in head))
    for name, fig in results.items():
        print(
            f"  {name:48} {fig['rps']:8.0f} {fig['p50']:8.2f} {fig['p90']:8.2f} "
            f"{fig['p99']:8.2f} {fig['non2xx']:8.0f} {fig['cpu_us']:10.1f}"
        )
    _rest_ratios(results)


def _rest_ratios(results: dict[str, dict[str, float]]) -> None:
    gw, base, bottom = results[GATEWAY], results[NAIVE_DEFAULT], results[FLOOR]
    ratio = gw["rps"] / base["rps"]
    print(
        f"  gateway / naive-default requests/s: {ratio:.1f}x (target >= 4x: "
        f"{'met' if ratio >= 4 else 'NOT met'}); gateway / naive-model: "
        f"{gw['rps'] / results[NAIVE_MODEL]['rps']:.1f}x"
    )
    to_floor = gw["rps"] / bottom["rps"]
    print(
        f"  gateway / floor requests/s: {to_floor:.2f}x (target >= 0.8x: "
        f"{'met' if to_floor >= 0.8 else 'NOT met'}); floor under the guarded protocol / "
        f"floor: {results[FLOOR_GUARDED]['rps'] / bottom['rps']:.2f}x"
    )
    if bottom["cpu_us"] and gw["cpu_us"]:
        print(
            f"  floor CPU / gateway CPU per request: {bottom['cpu_us'] / gw['cpu_us']:.2f}x "
            f"({bottom['cpu_us']:.1f} / {gw['cpu_us']:.1f} us; guarded protocol "
            f"{results[FLOOR_GUARDED]['cpu_us']:.1f} us)"
        )
    print(
        f"  gateway p99 {gw['p99']:.2f} ms (target <= 15 ms: "
        f"{'met' if gw['p99'] <= 15 else 'NOT met'}); naive-default p99 / gateway p99: "
        f"{base['p99'] / gw['p99']:.1f}x; floor p99 {bottom['p99']:.2f} ms"
    )


# ------------------------------------------------------------------- SSE fan-out

_TIMESTAMP = re.compile(rb'"timestamp":"([^"]+)"')
_ROUND = re.compile(rb'"collection_time_ms":(\d+)')


def _sse_clients(port: int, clients: int, seconds: float, conn: Connection) -> None:
    import uvloop

    conn.send(uvloop.run(_sse_main(port, clients, seconds)))


def _dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """Decode every complete HTTP chunk of `raw`: (the decoded bytes, what is left over)."""
    text = b""
    while True:
        end = raw.find(b"\r\n")
        if end < 0:
            return text, raw
        size = int(raw[:end], 16)
        if len(raw) < end + 2 + size + 2:
            return text, raw
        text += raw[end + 2 : end + 2 + size]
        raw = raw[end + 2 + size + 2 :]


class _SseClients:
    """`clients` raw-socket SSE clients of one gateway, and the delivery lags they see."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.clients = clients
        self.lags: list[float] = []
        self.by_sequence: dict[int, list[float]] = {}
        self.round_end: dict[int, float] = {}
        self.counts = {"events": 0, "errors": 0, "connected": 0}
        self.measuring = asyncio.Event()
        self.stop = asyncio.Event()
        self.request = (
            f"GET {REST_PATH}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()

    async def client(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(self.request)
        header = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in header.split(b"\r\n", 1)[0], header
        chunked = b"chunked" in header.lower()
        self.counts["connected"] += 1
        raw = b""  # undecoded transfer bytes
        text = b""  # decoded event-stream bytes
        first_id: list[int] = []
        try:
            while not self.stop.is_set():
                data = await reader.read(262144)
                if not data:
                    return
                if chunked:
                    decoded, raw = _dechunk(raw + data)
                    text += decoded
                else:
                    text += data
                now = time.time()
                while b"\n\n" in text:
                    event, text = text.split(b"\n\n", 1)
                    self._on_event(event, now, first_id)
        finally:
            writer.close()

    def _on_event(self, event: bytes, now: float, first_id: list[int]) -> None:
        """Count one event; a snapshot after the first one is a delivery with a lag."""
        if b"event: snapshot" not in event:
            if b"event: error" in event:
                self.counts["errors"] += 1
            return
        # Frames start with `id: EPOCH-SEQUENCE`; the sequence names the snapshot.
        ident = int(event[4 : event.index(b"\n")].rsplit(b"-", 1)[-1])
        if not first_id:
            first_id.append(ident)  # the snapshot current at connect time: not a delivery
            return
        if not self.measuring.is_set():
            return
        done = self.round_end.get(ident)
        if done is None:  # parse a snapshot's times once, not once per client
            stamp = _TIMESTAMP.search(event)[1].decode()  # type: ignore[index]
            taken = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            done = taken + int(_ROUND.search(event)[1]) / 1000.0  # type: ignore[index]
            self.round_end[ident] = done
        self.lags.append((now - done) * 1000.0)
        self.by_sequence.setdefault(ident, []).append(self.lags[-1])
        self.counts["events"] += 1

    async def connect(self) -> list[asyncio.Task[None]]:
        """Start every client, in waves, and wait until all are connected (or one failed)."""
        tasks = []
        for _ in range(self.clients):
            tasks.append(asyncio.create_task(self.client()))
            if len(tasks) % 50 == 0:
                await asyncio.sleep(0.05)  # connect in waves, as real users arrive
        deadline = time.monotonic() + 60
        while self.counts["connected"] < self.clients:
            failed = next((t for t in tasks if t.done() and t.exception()), None)
            if failed is not None or time.monotonic() > deadline:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if failed is not None:
                    raise RuntimeError(f"an SSE client failed: {failed.exception()!r}")
                break
            await asyncio.sleep(0.1)
        return tasks

    def print_by_sequence(self) -> None:
        for ident, values in sorted(self.by_sequence.items()):
            values.sort()
            print(f"  seq {ident}: n={len(values)} min={values[0]:.0f} max={values[-1]:.0f}")


async def _sse_main(port: int, clients: int, seconds: float) -> dict[str, Any]:
    run = _SseClients(port, clients)
    tasks = await run.connect()
    await asyncio.sleep(1.5)  # let every client get past its first event
    run.measuring.set()
    await asyncio.sleep(seconds)
    run.stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if os.environ.get("BENCH_GATEWAY_DEBUG"):
        run.print_by_sequence()
    return {"lags": run.lags, **run.counts}


def run_sse_clients(port: int, clients: int, seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_sse_clients, args=(port, clients, seconds, child), daemon=True)
    process.start()
    try:
        if not parent.poll(seconds + 120):
            raise RuntimeError("SSE clients did not finish")
        result: dict[str, Any] = parent.recv()
        return result
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_sse() -> None:
    print(
        f"SSE {REST_PATH}/stream: 1 snapshot/s, full body; lag = read time - round end "
        "(timestamp + collection_time_ms); clients in their own process (asyncio sockets)"
    )
    with fleet(1.0) as address, gateway(address) as served:
        port = served.port
        rows = []
        for clients, seconds in ((1, 8.0), (SSE_CLIENTS, float(SSE_SECONDS))):
            result = run_sse_clients(port, clients, seconds)
            lags = result["lags"]
            if not lags:
                raise RuntimeError(f"{clients} SSE clients received no events: {result}")
            rows.append(
                (
                    clients,
                    result["connected"],
                    len(lags),
                    statistics.median(lags),
                    _quantile(lags, 0.99),
                    max(lags),
                    result["errors"],
                )
            )
    head = ("clients", "connected", "events", "p50 ms", "p99 ms", "max ms")
    print("  " + " ".join(f"{word:>9}" for word in head))
    for clients, connected, events, p50, p99, worst, errors in rows:
        print(f"  {clients:9d} {connected:9d} {events:9d} {p50:9.1f} {p99:9.1f} {worst:9.1f}")
        if errors:
            print(f"  ({errors} `event: error` received)")
    one, many = rows[0], rows[-1]
    print(
        f"  1000-client p99 {many[4]:.1f} ms (target <= 200 ms: "
        f"{'met' if many[4] <= 200 else 'NOT met'}); 1000-client p99 / 1-client p99: "
        f"{many[4] / one[4]:.1f}x; events per client per second: "
        f"{many[2] / many[1] / SSE_SECONDS:.2f} (1 snapshot/s)"
    )


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main(parts: list[str] | None = None) -> None:
    """Run the parts named (`rest`, `sse`), or both."""
    for name, run in (("rest", bench_rest), ("sse", bench_sse)):
        if not parts or name in parts:
            print(f"[{name}] before: {_load()}")
            run()
            print(f"[{name}] after: {_load()}")


if __name__ == "__main__":
    main(sys.argv[1:])
