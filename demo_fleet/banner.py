"""What `metrics-mesh demo` prints once everything is up: URLs, addresses, lines to paste.

Every line under "Ready to paste:" runs as printed (the tests run each one). Under `--secure`
they carry the CA, the client certificate and the operator's token (`demo_fleet.secure`).
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

from demo_fleet.plan import FleetPlan, dial, misbehaviour
from demo_fleet.secure import USERNAME, DemoCredentials
from mesh_common.registry import ServiceEntry


def installed_command(name: str) -> str:
    """The program to suggest: the one beside this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _example_agent(plan: FleetPlan) -> ServiceEntry:
    """An agent that stays up, a data service if there is one."""
    chaos = misbehaviour(plan.demo, plan.services)
    calm = [e for e in plan.services if e.name not in (chaos.restarting, chaos.not_serving)]
    return next((e for e in calm if e.data_source), calm[0] if calm else plan.services[0])


def _where(plan: FleetPlan, example: ServiceEntry) -> list[str]:
    agent = dial(example.host, example.agent_port)
    pushed = (
        f"  pushed       OTLP/gRPC {dial(plan.aggregator.host, plan.otlp_port)}, "
        f"OTLP/HTTP {plan.gateway_url}/v1/metrics, seed 003/004 REST (the pusher sends all three)"
    )
    return [
        f"  dashboard    {plan.gateway_url}/",
        f"  REST         {plan.gateway_url}/api/v1/real-time-metrics",
        f"  Prometheus   {plan.gateway_url}/metrics",
        f"  aggregator   {plan.aggregator_address}  (gRPC, metricsmesh.v1.AggregatorService)",
        f"  agents       one per instance of a service, e.g. {example.name} at {agent}",
        *_instances(plan),
        *([pushed] if plan.otlp_port > 0 else []),
    ]


def _instances(plan: FleetPlan) -> list[str]:
    """A line per process of every service of several instances (each one row of k/n)."""
    killed = misbehaviour(plan.demo, plan.services).killed
    lines: list[str] = []
    for entry in plan.services:
        count = len(entry.addresses)
        if count < 2:
            continue
        lines.append(
            f"  instances    {entry.name} runs {count} processes, one row of k/{count} up "
            "(listed in the dashboard's detail panel and by top's key i):"
        )
        lines += (
            f"                 {each.name:<22} http {dial(each.host, each.port)}  agent "
            f"{dial(each.host, each.agent_port)}"
            + ("  (killed now and then)" if each.name == killed else "")
            for each in plan.instances
            if each.entry.name == entry.name
        )
    replicated = plan.demo.replicated_service
    if replicated and replicated not in plan.services.names:
        lines.append(
            f"  instances    [demo] replicated_service = {replicated!r} is not in the registry: "
            "nobody runs replicas"
        )
    return lines


def _secured(credentials: DemoCredentials, config_path: Path) -> list[str]:
    files = credentials.certificates
    return [
        "",
        "Secured (--secure): mutual TLS on every gRPC hop, HTTPS, a bearer token on every call",
        f"  CA           {files.ca}",
        f"  client       {files.client}  key {files.client_key}",
        f"  API token    {credentials.token}",
        f"               (scope admin; printed because this demo is local: it is also in "
        f"{credentials.token_file}, mode 0600)",
        f"  login        user {USERNAME!r}, password {credentials.password} (also in "
        f"{credentials.password_file}, mode 0600)",
        f"  config       {config_path} (mode 0600: it holds the JWT secret and the mesh's "
        "client_token)",
        f"  browser      trust {files.ca} as an authority (or accept the warning), then sign "
        f"in as {USERNAME!r} or paste the API token",
    ]


def _paste(plan: FleetPlan, example: ServiceEntry, config_path: Path) -> list[str]:
    grpcurl = shlex.quote(installed_command("grpcurl"))
    cli = shlex.quote(installed_command("metrics-mesh"))
    agg, gateway = plan.aggregator_address, plan.gateway_url
    agent = dial(example.host, example.agent_port)
    dial_flags, bearer, curl, login = "-plaintext", "", "curl -s", []
    credentials = plan.credentials
    if credentials is not None:
        files = credentials.certificates
        paths = (files.ca, files.client, files.client_key)
        ca, cert, key = (shlex.quote(str(path)) for path in paths)
        dial_flags = f"-cacert {ca} -cert {cert} -key {key}"
        bearer = f" -H {shlex.quote(f'authorization: Bearer {credentials.token}')}"
        curl = f"curl -s --cacert {ca}"  # the gateway's HTTPS asks no client certificate
        body = json.dumps({"username": USERNAME, "password": credentials.password})
        login = [
            f"{curl} -X POST {gateway}/auth/login -H 'Content-Type: application/json' "
            f"-d {shlex.quote(body)}"
        ]
        curl += f" -H {shlex.quote(f'Authorization: Bearer {credentials.token}')}"
    config = shlex.quote(str(config_path))
    return [
        f"{grpcurl} {dial_flags} {agg} list",
        f"{grpcurl} {dial_flags}{bearer} -d '{{}}' {agg} "
        "metricsmesh.v1.AggregatorService/GetSnapshot",
        f'{grpcurl} {dial_flags}{bearer} -d \'{{"filter": {{"service_types": ["data"]}}}}\' '
        f"{agg} metricsmesh.v1.AggregatorService/StreamSnapshots",
        f"{grpcurl} {dial_flags} {agent} metricsmesh.v1.EventRateService/GetEventRate",
        f'{grpcurl} {dial_flags} -d \'{{"service": "{example.name}"}}\' {agent} '
        "grpc.health.v1.Health/Check",
        f"{curl} {gateway}/api/v1/real-time-metrics",
        f"{curl} {gateway}/metrics/services/health",
        f"{curl} {gateway}/api/v1/metrics/latest/cpu_usage_percent",
        *login,
        f"{cli} top --config {config}",
        f"{cli} snapshot --config {config}",
    ]


def counted(plan: FleetPlan) -> str:
    """`15 services`, and how many processes run them when that is more."""
    services, processes = len(plan.services), len(plan.instances)
    return f"{services} services" + (f" ({processes} processes)" if processes > services else "")


def banner(plan: FleetPlan, config_path: Path, run_dir: Path) -> str:
    """What the operator needs once everything is up: URLs, addresses, commands to paste."""
    example = _example_agent(plan)
    credentials = plan.credentials
    lines = [
        "",
        f"metrics-mesh demo is up: {counted(plan)}, the aggregator and the gateway",
        "",
        *_where(plan, example),
        *(_secured(credentials, config_path) if credentials is not None else []),
        "",
        "Ready to paste:",
        *(f"  {line}" for line in _paste(plan, example, config_path)),
        "",
        "Misbehaving on purpose:",
        *(f"  {note}" for note in misbehaviour(plan.demo, plan.services).notes),
        "",
        f"Logs and the generated config: {run_dir}",
        "Press Ctrl-C to stop every process.",
        "",
    ]
    return "\n".join(lines)
