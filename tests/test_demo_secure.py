"""`metrics-mesh demo --secure`: the real demo under mutual TLS and tokens, its lines as pasted.

One demo runs for the module, started with a file whose own `[tls]` and `[auth]` it must
replace. The lines it prints under "Ready to paste:" are run verbatim (`shlex.split`); the
refusals are those lines with the certificate or the token taken out.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metricsmesh_cli.certs import write_certificates
from metricsmesh_cli.main import main
from tests.demo_process import Demo, running_demo
from tests.eventually import eventually_sync

pytestmark = pytest.mark.slow

STALE_TOKEN = "a-token-of-the-users-own-file"


def user_file(path: Path) -> Path:
    """A mesh file with a `[tls]` of another CA and an `[auth]` the demo must not use."""
    strangers = write_certificates(path.parent / "strangers", ["127.0.0.1"])
    path.write_text(
        strangers.tls_lines()
        + f'\n[auth]\njwt_secret = "{"x" * 32}"\nclient_token = "{STALE_TOKEN}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("secure")
    env = {key: value for key, value in os.environ.items() if not key.startswith("METRICS_MESH_")}
    env["XDG_STATE_HOME"] = str(folder / "state")  # the demo's history stays in the test's dir
    config = user_file(folder / "user.toml")
    options = ("--secure", "--no-misbehave", "--load-scale", "0.5", "--config", str(config))
    with running_demo(folder / "run", *options, env=env, timeout=60) as running:
        yield running


def line_with(demo: Demo, *words: str) -> str:
    """The one printed line holding every one of `words`."""
    (line,) = (line for line in demo.paste_lines() if all(word in line for word in words))
    return line


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def answer(line: str) -> Any:
    """The JSON a printed line answers, run as pasted; fails the test when it fails."""
    done = run(shlex.split(line))
    assert done.returncode == 0, (line, done.stderr)
    return json.loads(done.stdout)


def active_rows(rows: list[dict[str, Any]]) -> list[str]:
    return [
        row["service_name"] for row in rows if row["status"] in ("active", "SERVICE_STATUS_ACTIVE")
    ]


def test_it_says_what_it_replaced_and_where_the_secrets_are(demo: Demo) -> None:
    text = demo.output()
    run_dir = demo.run_dir
    assert "--secure: the demo's own [tls] and [auth] replace the file's" in text
    assert f"dashboard    https://127.0.0.1:{demo.gateway.port}/" in text
    for path in ("tls/ca.pem", "tls/client.pem", "tls/client-key.pem", "token", "password"):
        assert str(run_dir / path) in text
    token = (run_dir / "token").read_text().strip()
    assert f"API token    {token}" in text
    assert "printed because this demo is local" in text


def test_the_printed_grpcurl_lines_answer_with_every_service(demo: Demo) -> None:
    listed = run(shlex.split(line_with(demo, " list")))
    assert "metricsmesh.v1.AggregatorService" in listed.stdout.split(), listed.stderr

    def fifteen_active() -> list[str] | None:
        snapshot = answer(line_with(demo, "AggregatorService/GetSnapshot"))["snapshot"]
        names = active_rows(snapshot["services"])
        return names if len(names) >= 15 else None

    names = eventually_sync(fifteen_active, timeout=20, what="15 active rows over grpcurl")
    assert set(demo.config.services.names) <= set(names)
    stream = line_with(demo, "StreamSnapshots")
    with subprocess.Popen(shlex.split(stream), stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        first = process.stdout.readline()
        process.terminate()
    assert first.startswith("{"), stream
    agent = answer(line_with(demo, "EventRateService/GetEventRate"))
    assert agent["service_name"] in names and int(agent["total_events"]) > 0
    assert answer(line_with(demo, "Health/Check")) == {"status": "SERVING"}


def test_the_printed_curl_lines_answer_with_every_service(demo: Demo) -> None:
    def fifteen_active() -> dict[str, Any] | None:
        body: dict[str, Any] = answer(line_with(demo, "curl", "/api/v1/real-time-metrics"))
        return body if len(active_rows(body["active_apis"])) >= 15 else None

    body = eventually_sync(fifteen_active, timeout=20, what="15 active rows over curl")
    assert body["events_per_second"] > 0
    health = answer(line_with(demo, "curl", "/metrics/services/health"))
    assert "checkout" in {service["service_name"] for service in health["services"]}  # pushed
    latest = answer(line_with(demo, "curl", "/cpu_usage_percent"))
    assert {value["labels"].get("host") for value in latest["values"]} >= {"server01", "server02"}
    login = answer(line_with(demo, "curl", "/auth/login"))
    # The login's token reads the REST body as the printed token does.
    rest = shlex.split(line_with(demo, "curl", "/api/v1/real-time-metrics"))
    rest[rest.index("-H") + 1] = f"Authorization: Bearer {login['access_token']}"
    assert answer(shlex.join(rest))["active_apis"]


def test_the_printed_cli_line_reads_the_generated_config(demo: Demo) -> None:
    done = run(shlex.split(line_with(demo, " snapshot --config ")))
    assert done.returncode == 0, done.stderr
    assert "weather-api" in done.stdout


def without(argv: list[str], *options: str) -> list[str]:
    """`argv` without each of `options` and its value."""
    for option in options:
        index = argv.index(option)
        argv = argv[:index] + argv[index + 2 :]
    return argv


def plaintext(grpcurl: list[str]) -> list[str]:
    """A printed grpcurl line made plaintext: no CA, no certificate, `-plaintext`.

    grpcurl waits its whole connect timeout (10 s) for a handshake that cannot succeed: 2 s do.
    """
    program, *rest = without(grpcurl, "-cacert", "-cert", "-key")
    return [program, "-plaintext", "-connect-timeout", "2", *rest]


def test_without_the_certificate_or_the_token_the_mesh_refuses(demo: Demo) -> None:
    grpc = shlex.split(line_with(demo, "AggregatorService/GetSnapshot"))
    no_token = run(without(grpc, "-H"))
    assert no_token.returncode != 0 and "Unauthenticated" in no_token.stderr
    assert run(without(grpc, "-cert", "-key")).returncode != 0  # mutual TLS
    assert run(plaintext(grpc)).returncode != 0
    agent = shlex.split(line_with(demo, "EventRateService/GetEventRate"))
    assert run(plaintext(agent)).returncode != 0  # the agents serve TLS too

    curl = shlex.split(line_with(demo, "curl", "/api/v1/real-time-metrics"))
    status = [*without(curl, "-H"), "-o", "/dev/null", "-w", "%{http_code}"]
    assert run(status).stdout == "401"  # story 23.2's endpoint is not public under --secure
    assert "--cert" not in curl  # browsers and curl need only the CA: tokens guard HTTPS
    assert run(without(curl, "--cacert")).returncode != 0  # the demo's CA is not the system's
    assert run([word.replace("https://", "http://") for word in curl]).returncode != 0


def test_the_secrets_are_files_only_their_owner_reads(demo: Demo) -> None:
    run_dir = demo.run_dir
    token = (run_dir / "token").read_text().strip()
    password = (run_dir / "password").read_text().strip()
    private = ["token", "password", "metrics-mesh.toml", "tls/client-key.pem"]
    for name in (*private, "tls/server-key.pem", "tls/ca-key.pem"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o600, name
    config = (run_dir / "metrics-mesh.toml").read_text()
    assert token not in config and password not in config  # only their hashes
    assert STALE_TOKEN not in config


# --- what the demo refuses -----------------------------------------------


@pytest.mark.parametrize(
    ("table", "refusal"),
    [
        ("tls", "the demo runs plaintext; remove [tls]"),
        ("auth", "the demo runs without tokens; remove [auth]"),
    ],
)
def test_the_plain_demo_refuses_tls_and_auth_and_suggests_secure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, refusal: str
) -> None:
    path = tmp_path / "mesh.toml"
    if table == "tls":
        path.write_text(write_certificates(tmp_path, ["127.0.0.1"]).tls_lines(), encoding="utf-8")
    else:
        path.write_text(f'[auth]\njwt_secret = "{"x" * 32}"\n', encoding="utf-8")
    assert main(["demo", "--config", str(path), "--free-ports"]) == 2
    err = capsys.readouterr().err
    assert refusal in err and "metrics-mesh demo --secure" in err


def test_secure_refuses_environment_variables_that_would_override_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METRICS_MESH_AUTH_CLIENT_TOKEN", "elsewhere")
    assert main(["demo", "--secure", "--free-ports"]) == 2
    assert "METRICS_MESH_AUTH_CLIENT_TOKEN would override" in capsys.readouterr().err
