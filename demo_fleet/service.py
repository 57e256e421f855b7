"""One demo service as its own process: a small FastAPI app with the agent embedded.

`python -m demo_fleet.service --name weather-api --port 8009 --agent-port 18009
--type data --data-source weather --upstream http://127.0.0.1:8099` serves (one instance of
the service: `--instance-name log-aggregator#2` names another in its log lines and seeds its
workload apart):

- HTTP on `--port`: `/`, `/healthz`, `/api/status`, `/api/items/{n}`, `/api/latest`; every
  request is counted as `api_call` by the agent's middleware;
- the agent (EventRateService, health, reflection) on `--agent-port`, over TLS when the
  `--config` file has a `[tls]` table (`metrics-mesh demo --secure`);
- its own workload (`workload.Workload`, profile from `profiles.flows_for`).

Misbehaviour on request (the demo turns it on for a few services):
`--exit-after S` exits with status 75 after S seconds (the supervisor restarts it later);
`--not-serving START,PERIOD,DURATION` reports NOT_SERVING during those windows;
`--error START,PERIOD,DURATION` makes GetEventRate answer INTERNAL during those windows.
SIGINT/SIGTERM stop it gracefully; it also exits when its parent (`--parent-pid`) goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException

from agent import AgentServer, EventTracker, PortInUseError, RequestCountMiddleware
from demo_fleet.exit_codes import PLANNED_EXIT_STATUS, STARTUP_FAILURE_STATUS
from demo_fleet.faults import FaultInterceptor
from demo_fleet.profiles import Timing, api_timing, flows_for, kinds_of
from demo_fleet.schedule import Schedule, schedule_arg
from demo_fleet.workload import Workload
from mesh_common import logs
from mesh_common.addresses import HostPort, format_host_port
from mesh_common.config import load_mesh_file
from mesh_common.errors import EXIT_FAILURE, ConfigError
from mesh_common.logs import LogFormat
from mesh_common.options import add_config_option, add_logging_options
from mesh_common.tls import PLAINTEXT, TlsSettings
from mesh_common.tls import SECTION as TLS
from mesh_common.transport import listen_http

log = logging.getLogger("demo-service")

CHAOS_POLL_SECONDS = 0.2
STARTED_POLL_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Everything one demo service process needs to know."""

    name: str
    service_type: str
    data_source: str
    host: str
    port: int
    agent_port: int
    upstream: str | None = None
    load_scale: float = 1.0
    exit_after: float | None = None
    not_serving: Schedule | None = None
    error: Schedule | None = None
    parent_pid: int | None = None
    log_level: str = "INFO"
    log_format: LogFormat = "text"
    tls: TlsSettings = PLAINTEXT
    """The agent's `[tls]` (the HTTP API stays plaintext: it is the service's own)."""
    instance_name: str = ""
    """Which instance of the service this process is (`log-aggregator#2`; '' = `name`)."""

    @property
    def label(self) -> str:
        """The instance's name, else the service's: what its log lines and workload go by."""
        return self.instance_name or self.name


def create_app(
    options: ServiceOptions, tracker: EventTracker, workload: Workload, timing: Timing
) -> FastAPI:
    """The service's HTTP API; every request is counted and timed as `api_call`.

    `/api/items/{item}` takes as long as `timing` says and fails (503) as often.
    """
    app = FastAPI(title=options.name, docs_url=None, redoc_url=None, openapi_url=None)
    started = time.monotonic()
    rng = random.Random(options.label)

    @app.get("/")
    async def index() -> dict[str, Any]:
        return {
            "service": options.name,
            "instance": options.label,
            "type": options.service_type,
            "data_source": options.data_source or None,
            "agent_port": options.agent_port,
            "uptime_seconds": round(time.monotonic() - started, 3),
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        reading = tracker.read()
        return {"service": options.name, "events_per_second": reading.events_per_second}

    @app.get("/api/items/{item}")
    async def item(item: int) -> dict[str, Any]:
        seconds, failed = timing.sample(rng, time.monotonic() - started)
        await asyncio.sleep(seconds)
        if failed:
            raise HTTPException(503, "the demo failed this request on purpose")
        return {"item": item, "service": options.name}

    @app.get("/api/latest")
    async def latest() -> dict[str, Any]:
        return {"source": options.data_source or None, "reading": workload.last_payload}

    app.add_middleware(RequestCountMiddleware, tracker=tracker, kind="api_call")
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class DemoService:
    """Runs one demo service until it is told to stop (or decides to, on purpose)."""

    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        flows = flows_for(
            options.name, options.service_type, has_data_source=bool(options.data_source)
        )
        self.tracker = EventTracker(options.name, kinds=("api_call", *kinds_of(flows)))
        self._flows = flows
        self._started = time.monotonic()
        self._stop = asyncio.Event()
        self._exit_status = 0
        interceptors = []
        if options.error is not None:
            schedule = options.error
            interceptors.append(
                FaultInterceptor(
                    lambda: schedule.active(self.elapsed()),
                    f"{options.name}: simulated fault: its backing store is unavailable",
                )
            )
        self.agent = AgentServer(
            self.tracker,
            host=options.host,
            port=options.agent_port,
            interceptors=interceptors,
            tls=options.tls,
        )

    def elapsed(self) -> float:
        """Seconds since the service started."""
        return time.monotonic() - self._started

    def request_stop(self, status: int = 0) -> None:
        """Ask the service to stop and exit with `status`."""
        if not self._stop.is_set():
            self._exit_status = status
            self._stop.set()

    async def run(self) -> int:
        """Serve until stopped; return the process exit status."""
        sock = await self._bind()
        if sock is None:
            return STARTUP_FAILURE_STATUS
        try:
            async with contextlib.AsyncExitStack() as clients:
                await self._serve(sock, self._workload(clients))
        finally:
            await self.agent.stop(grace_seconds=1.0)
            sock.close()
        log.info("%s stopped (exit status %d)", self.options.label, self._exit_status)
        return self._exit_status

    async def _bind(self) -> socket.socket | None:
        """Bind the HTTP port and start the agent; None (and a log line) when a port is taken."""
        options = self.options
        try:
            sock = listen_http(options.host, options.port)
        except PortInUseError as error:
            log.error("%s (HTTP port): %s", options.label, error)
            return None
        try:
            await self.agent.start()
        except PortInUseError as error:
            sock.close()
            log.error("%s: agent port %d: %s", options.label, options.agent_port, error)
            return None
        return sock

    def _workload(self, clients: contextlib.AsyncExitStack) -> Workload:
        """The service's workload, its HTTP clients closed by `clients`."""
        options = self.options
        own_address = HostPort(options.host, options.port).dialable()
        api_client = httpx.AsyncClient(base_url=f"http://{own_address}", timeout=2.0)
        clients.push_async_callback(api_client.aclose)
        upstream_client = None
        if options.upstream:
            upstream_client = httpx.AsyncClient(base_url=options.upstream, timeout=2.0)
            clients.push_async_callback(upstream_client.aclose)
        return Workload(
            self.tracker,
            self._flows,
            api_client=api_client,
            upstream_client=upstream_client,
            data_source=options.data_source,
            scale=options.load_scale,
            seed=options.label,
        )

    async def _serve(self, sock: socket.socket, workload: Workload) -> None:
        """Serve HTTP on `sock` and run the workload and the chaos loop until stopped."""
        options = self.options
        config = uvicorn.Config(
            create_app(options, self.tracker, workload, api_timing(self._flows)),
            log_level="warning",
            log_config=None,  # uvicorn's warnings go through the mesh's handler
            access_log=False,
            http="httptools",
            lifespan="off",
        )
        server = _Server(config)
        tasks: list[asyncio.Task[None]] = []
        http_task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
        try:
            if not await self._http_started(server, http_task):
                self._exit_status = EXIT_FAILURE
                return
            log.info(
                "%s up: http %s, agent %s",
                options.label,
                format_host_port(options.host, options.port),
                self.agent.address,
            )
            tasks = [
                asyncio.create_task(workload.run(), name="workload"),
                asyncio.create_task(self._chaos(), name="chaos"),
            ]
            await self._until_stopped(http_task, tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            server.should_exit = True
            with contextlib.suppress(Exception):
                await http_task

    async def _http_started(self, server: uvicorn.Server, http_task: asyncio.Task[None]) -> bool:
        """Wait until uvicorn serves; False (and a log line) when it stopped instead."""
        while not server.started and not http_task.done():
            await asyncio.sleep(STARTED_POLL_SECONDS)
        if http_task.done():
            await http_task
            log.error("%s: the HTTP server stopped during startup", self.options.label)
            return False
        return True

    async def _until_stopped(
        self, http_task: asyncio.Task[None], tasks: list[asyncio.Task[None]]
    ) -> None:
        """Wait for a stop request; a task that ends first is a bug (exit status 1)."""
        stop_task = asyncio.create_task(self._stop.wait())
        await asyncio.wait({stop_task, http_task, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        if self._stop.is_set():
            return
        ended = next(task for task in (http_task, *tasks) if task.done())
        reason = None if ended.cancelled() else ended.exception()
        log.error("%s: %s stopped unexpectedly: %r", self.options.label, ended.get_name(), reason)
        self._exit_status = EXIT_FAILURE

    async def _chaos(self) -> None:
        """Planned misbehaviour, and the watch on the parent process."""
        options = self.options
        serving = True
        while True:
            await asyncio.sleep(CHAOS_POLL_SECONDS)
            elapsed = self.elapsed()
            if options.parent_pid is not None and os.getppid() != options.parent_pid:
                log.warning("%s: the supervisor is gone; stopping", options.label)
                self.request_stop(0)
            if options.exit_after is not None and elapsed >= options.exit_after:
                log.warning(
                    "%s: planned exit after %.0f s (status %d)",
                    options.label,
                    elapsed,
                    PLANNED_EXIT_STATUS,
                )
                self.request_stop(PLANNED_EXIT_STATUS)
            if options.not_serving is not None:
                wanted = not options.not_serving.active(elapsed)
                if wanted != serving:
                    serving = wanted
                    log.warning(
                        "%s: planned health change: %s",
                        options.label,
                        "SERVING" if serving else "NOT_SERVING",
                    )
                    await self.agent.set_serving(serving)


def parse_args(argv: list[str] | None = None) -> ServiceOptions:
    """Read the command line of a demo service process."""
    parser = argparse.ArgumentParser(
        prog="python -m demo_fleet.service",
        description="One demo service: a FastAPI app with the metrics-mesh agent embedded.",
    )
    parser.add_argument("--name", required=True, help="service name (the agent reports it)")
    parser.add_argument(
        "--instance-name", default="", help="which instance of the service (e.g. NAME#2)"
    )
    parser.add_argument("--type", dest="service_type", default="core", help="service type")
    parser.add_argument("--data-source", default="", help="data source of a data service")
    parser.add_argument("--host", default="127.0.0.1", help="bind host of HTTP and agent")
    parser.add_argument("--port", type=int, required=True, help="HTTP port")
    parser.add_argument("--agent-port", type=int, required=True, help="agent gRPC port")
    parser.add_argument("--upstream", help="base URL of the fake upstream (data services)")
    parser.add_argument("--load-scale", type=float, default=1.0, help="multiply every rate")
    parser.add_argument("--exit-after", type=float, help="exit (status 75) after SECONDS")
    parser.add_argument("--not-serving", type=schedule_arg, help="START,PERIOD,DURATION")
    parser.add_argument("--error", type=schedule_arg, help="START,PERIOD,DURATION")
    parser.add_argument("--parent-pid", type=int, help="exit when this parent process is gone")
    add_config_option(parser)
    add_logging_options(parser)
    args = parser.parse_args(argv)
    try:
        tls = load_mesh_file(args.config).read(TLS)
    except ConfigError as error:
        parser.error(str(error))  # exits with the usage status: the supervisor gives up
    return ServiceOptions(
        name=args.name,
        instance_name=args.instance_name,
        service_type=args.service_type,
        data_source=args.data_source,
        host=args.host,
        port=args.port,
        agent_port=args.agent_port,
        upstream=args.upstream,
        load_scale=args.load_scale,
        exit_after=args.exit_after,
        not_serving=args.not_serving,
        error=args.error,
        parent_pid=args.parent_pid,
        log_level=args.log_level,
        log_format=args.log_format,
        tls=tls,
    )


async def _main(options: ServiceOptions) -> int:
    service = DemoService(options)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.request_stop, 0)
    return await service.run()


def main(argv: list[str] | None = None) -> int:
    """Run one demo service until SIGINT/SIGTERM; return its exit status."""
    options = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    logs.configure(options.log_level, options.log_format)
    return asyncio.run(_main(options))


if __name__ == "__main__":
    sys.exit(main())
