"""What TLS costs: aggregator rounds and REST requests, against plaintext in the same run.

python -m bench tls                       # everything (about three minutes)
python -m bench.bench_tls rounds | rest   # one part

Certificates come from `metrics-mesh certs` (`write_certificates`: EC P-256, as users get them).

(a) Rounds of 15 and of 200 agents. One agent fleet (2 worker processes, as bench_aggregator)
    and one aggregator per mode, all up at once: `plaintext` (the baseline), `TLS` (agents
    serve TLS, the aggregator verifies them with the CA) and `mutual TLS` (the aggregator
    presents its certificate too). Channels are persistent, so the handshakes are paid once:
    the first round is reported apart (its own duration, from the snapshot). Then rounds
    alternate between the modes (a busy moment of the shared machine falls on all three):
    round wall time p50 / p95, the CPU per round of the aggregator's process and of the agent
    processes, and each mode's p50 over plaintext's. Target: <= 1.3x plaintext.
(b) REST `GET /api/v1/real-time-metrics`: two gateways started as users start them
    (`python -m gateway --config`), one serving HTTP and one HTTPS, fed by the same fleet
    (15 TLS agents and a TLS aggregator); wrk -t2 -c50 (keep-alive: 50 handshakes, then
    requests), alternating runs, fastest of each kept. Requests/s, latency, the server's CPU
    per request, and HTTPS over HTTP. Target: >= 0.7x. wrk shares the 2 CPUs and pays for
    its own decryption, so the ratio of the server's CPU per request is printed too.
(c) The bearer-token check a request pays with `[auth]` on top, as `python -m bench auth`
    measures it (its own code, called here so the figures sit side by side).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from aggregator import AggregatorServer, AggregatorSettings, Registry
from bench import bench_aggregator, bench_auth
from bench.bench_gateway import REST_PATH, _cpu_seconds, gateway, spawned, wrk
from mesh_common.tls import TlsSettings
from metricsmesh_cli.certs import Certificates, write_certificates

DEADLINE = 5.0
ROUNDS = {15: 200, 200: 40}
"""Rounds per mode after the warm-up, by fleet size."""
WARM_UP = 3
TARGET_ROUNDS = 1.3
TARGET_REST = 0.7
WRK_SECONDS = 10
WRK_RUNS = 3
"""Alternating wrk runs of each gateway; the fastest of each is kept."""


def modes(files: Certificates) -> dict[str, TlsSettings | None]:
    """The `[tls]` of the agents and the aggregator in each mode (None: plaintext)."""

    def table(client_auth: bool) -> TlsSettings:
        return TlsSettings(
            ca_file=str(files.ca),
            cert_file=str(files.server),
            key_file=str(files.server_key),
            client_auth=client_auth,
        )

    return {"plaintext": None, "TLS": table(False), "mutual TLS": table(True)}


# ------------------------------------------------------------------- (a) rounds


@dataclasses.dataclass
class Mode:
    """One mode's aggregator, agent processes and figures."""

    name: str
    server: AggregatorServer
    agent_pids: list[int]
    first_ms: float = 0.0
    first_answered: int = 0
    walls: list[float] = dataclasses.field(default_factory=list)
    cpu: float = 0.0
    agents_cpu: float = 0.0
    short: int = 0
    """Rounds in which not every agent answered."""


def _pids_cpu(pids: list[int]) -> float:
    return sum(_cpu_seconds(pid) for pid in pids)


async def _one_round(mode: Mode, count: int) -> None:
    agents = _pids_cpu(mode.agent_pids)
    cpu = time.process_time()
    started = time.perf_counter()
    snapshot = await mode.server.loop.snapshot(0)
    mode.walls.append(time.perf_counter() - started)
    mode.cpu += time.process_time() - cpu
    mode.agents_cpu += _pids_cpu(mode.agent_pids) - agents
    mode.short += snapshot.services_answered < count


async def _measure(
    count: int, fleets: dict[str, tuple[Registry, list[int]]], tls: dict[str, TlsSettings | None]
) -> list[Mode]:
    settings = AggregatorSettings(
        port=0,
        deadline_seconds=DEADLINE,
        interval_seconds=DEADLINE + 1,
        backoff_max_seconds=0,
        min_round_spacing_seconds=0,
    )
    chosen = [
        Mode(name, AggregatorServer(registry, settings, tls=tls[name]), pids)
        for name, (registry, pids) in fleets.items()
    ]
    try:
        for mode in chosen:  # the first round: every connection and handshake
            await mode.server.start()
            first = await mode.server.loop.snapshot(0)
            mode.first_ms = first.round_duration * 1000
            mode.first_answered = first.services_answered
        for mode in chosen:
            for _ in range(WARM_UP):
                await mode.server.loop.snapshot(0)
        for _ in range(ROUNDS[count]):
            for mode in chosen:
                await _one_round(mode, count)
    finally:
        for mode in chosen:
            await mode.server.stop(0)
    return chosen


@contextlib.contextmanager
def _fleets(
    count: int, tls: dict[str, TlsSettings | None]
) -> Iterator[dict[str, tuple[Registry, list[int]]]]:
    with contextlib.ExitStack() as stack:
        fleets = {}
        for name, table in tls.items():
            registry = stack.enter_context(bench_aggregator.agent_fleet(count, tls=table))
            fleets[name] = (registry, list(bench_aggregator.AGENT_PIDS))
        yield fleets


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bench_rounds(files: Certificates) -> dict[int, list[Mode]]:
    """Rounds of 15 and 200 agents in each mode; prints the table, returns the figures."""
    tls = modes(files)
    results = {}
    for count in ROUNDS:
        with _fleets(count, tls) as fleets:
            results[count] = asyncio.run(_measure(count, fleets, tls))
    print(
        "(a) aggregator rounds, persistent channels; rounds alternate between the modes; "
        f"{WARM_UP} warm-up rounds each, then {ROUNDS[15]} (15 agents) / {ROUNDS[200]} (200)"
    )
    head = ("first ms", "p50 ms", "p95 ms", "CPU ms", "agents CPU ms", "p50 / plain")
    print(f"  {'agents':>6} {'mode':12} " + " ".join(f"{word:>13}" for word in head))
    for count, chosen in results.items():
        base = statistics.median(chosen[0].walls)
        for mode in chosen:
            p50 = statistics.median(mode.walls)
            rounds = len(mode.walls)
            figures = (
                f"{mode.first_ms:13.1f}",
                f"{p50 * 1000:13.2f}",
                f"{_percentile(mode.walls, 0.95) * 1000:13.2f}",
                f"{mode.cpu / rounds * 1000:13.2f}",
                f"{mode.agents_cpu / rounds * 1000:13.2f}",
                f"{p50 / base:12.2f}x",
            )
            note = (
                ""
                if mode.first_answered == count
                else f"  (first round: {mode.first_answered} answered)"
            )
            note += f"  ({mode.short} rounds short)" if mode.short else ""
            print(f"  {count:6} {mode.name:12} " + " ".join(figures) + note)
        worst = max(statistics.median(mode.walls) / base for mode in chosen[1:])
        verdict = "met" if worst <= TARGET_ROUNDS else "NOT met"
        print(
            f"  {count} agents: the worst p50 ratio {worst:.2f}x "
            f"(target <= {TARGET_ROUNDS}x: {verdict})"
        )
    return results


# ------------------------------------------------------------------- (b) REST


def _secure_fleet(tls: TlsSettings, conn: Connection) -> None:
    asyncio.run(_secure_fleet_main(tls, conn))


async def _secure_fleet_main(tls: TlsSettings, conn: Connection) -> None:
    from agent import AgentServer, EventTracker
    from aggregator import DEFAULT_REGISTRY

    agents, entries = [], []
    for entry in DEFAULT_REGISTRY:
        agent = AgentServer(EventTracker(entry.name), tls=tls)
        await agent.start()
        agents.append(agent)
        entries.append(dataclasses.replace(entry, host="127.0.0.1", agent_port=agent.port))
    settings = AggregatorSettings(port=0, interval_seconds=1.0, deadline_seconds=0.5)
    aggregator = AggregatorServer(Registry(entries), settings, tls=tls)
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


def _mesh(path: Path, lines: str) -> str:
    path.write_text(lines, encoding="utf-8")
    return str(path)


def bench_rest(files: Certificates) -> dict[str, dict[str, float]]:
    """HTTP against HTTPS requests/s of the REST endpoint; prints the table."""
    if shutil.which("wrk") is None:
        print("(b) rest: skipped, `wrk` is not installed (Debian package wrk)")
        return {}
    tls = modes(files)["TLS"]
    assert tls is not None
    folder = files.ca.parent
    # Both dial the TLS aggregator; only the second has a certificate to serve HTTPS with.
    http_mesh = _mesh(folder / "http.toml", f'[tls]\nca_file = "{files.ca}"\n')
    https_mesh = _mesh(folder / "https.toml", files.tls_lines(client_auth=False))
    verify = ssl.create_default_context(cafile=str(files.ca))
    with (
        spawned(_secure_fleet, (tls,), "the TLS fleet") as address,
        gateway(address, config=http_mesh) as http,
        gateway(address, config=https_mesh, https=verify) as https,
    ):
        urls = {
            "HTTP": (f"http://127.0.0.1:{http.port}{REST_PATH}", http.pid),
            "HTTPS": (f"https://127.0.0.1:{https.port}{REST_PATH}", https.pid),
        }
        for url, _ in urls.values():
            wrk(url, 2)  # warm-up
        results: dict[str, dict[str, float]] = {}
        for name in WRK_RUNS * list(urls):
            url, pid = urls[name]
            figures = wrk(url, WRK_SECONDS, pid=pid)
            if name not in results or figures["rps"] > results[name]["rps"]:
                results[name] = figures
    print(
        f"(b) REST {REST_PATH}: wrk -t2 -c50 -d{WRK_SECONDS}s keep-alive, fastest of "
        f"{WRK_RUNS} alternating runs; both gateways dial the same TLS aggregator"
    )
    head = ("req/s", "p50 ms", "p99 ms", "non-2xx", "CPU us/req", "/ HTTP")
    print(f"  {'server':8} " + " ".join(f"{word:>10}" for word in head))
    base = results["HTTP"]["rps"]
    for name, fig in results.items():
        print(
            f"  {name:8} {fig['rps']:10.0f} {fig['p50']:10.2f} {fig['p99']:10.2f} "
            f"{fig['non2xx']:10.0f} {fig['cpu_us']:10.1f} {fig['rps'] / base:9.2f}x"
        )
    ratio = results["HTTPS"]["rps"] / base
    verdict = "met" if ratio >= TARGET_REST else "NOT met"
    print(f"  HTTPS / HTTP requests/s: {ratio:.2f}x (target >= {TARGET_REST}x: {verdict})")
    cpu = results["HTTP"]["cpu_us"] / results["HTTPS"]["cpu_us"]
    print(
        f"  HTTP / HTTPS server CPU per request: {cpu:.2f}x (what the gateway can serve with "
        "TLS, relative, when the client does not share its CPUs)"
    )
    return results


# ------------------------------------------------------------------- (c) the token check


def bench_token_check(rest: dict[str, dict[str, float]]) -> None:
    """The token check per request (bench_auth's code), beside what HTTPS adds per request."""
    check = bench_auth.verifier()
    static_us = bench_auth.best_us(lambda: check.identify(bench_auth.STATIC))
    print("(c) per request, on top of plaintext HTTP (python -m bench auth measures the check)")
    if rest:
        added = rest["HTTPS"]["cpu_us"] - rest["HTTP"]["cpu_us"]
        print(f"  HTTPS, keep-alive: {added:+.1f} us server CPU per request (from (b))")
    print(f"  [auth] bearer token check (static token, Verifier.identify): {static_us:.1f} us")


def main(argv: list[str] | None = None) -> None:
    parts = argv if argv else ["rounds", "rest"]
    print(
        f"TLS cost: {os.cpu_count()} CPUs shared by the aggregator, the agents, the gateways "
        "and wrk (and by whatever else runs on this machine: ratios are the figures to read)"
    )
    with tempfile.TemporaryDirectory() as folder:
        files = write_certificates(folder, ["127.0.0.1", "localhost"])
        if "rounds" in parts:
            bench_rounds(files)
        rest = bench_rest(files) if "rest" in parts else {}
        bench_token_check(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
