"""`--version` on every program and subcommand, and `metricsmesh_build_info` in a real scrape."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata

import pytest
from prometheus_client.parser import text_string_to_metric_families

from metricsmesh_cli.main import SUBCOMMANDS
from tests.cli import METRICS_MESH, needs_cli
from tests.gateway_mesh import running_mesh

INSTALLED = metadata.version("metrics-mesh")


def output_of(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@needs_cli
@pytest.mark.parametrize("command", ["", *sorted(SUBCOMMANDS)])
def test_metrics_mesh_and_each_subcommand_print_the_installed_version(command: str) -> None:
    result = output_of(str(METRICS_MESH), *([command] if command else []), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"metrics-mesh {INSTALLED}\n"


@pytest.mark.parametrize("module", ["aggregator", "gateway", "metricsmesh_cli"])
def test_python_dash_m_prints_the_installed_version(module: str) -> None:
    result = output_of(sys.executable, "-m", module, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"metrics-mesh {INSTALLED}\n"


async def test_the_gateway_exposes_its_build_info_as_a_prometheus_gauge() -> None:
    async with running_mesh() as mesh:
        response = await mesh.http.get("/metrics")
    assert response.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    info = families["metricsmesh_build_info"]
    assert info.type == "gauge"
    (sample,) = info.samples
    assert sample.labels == {"version": INSTALLED, "python": platform.python_version()}
    assert sample.value == 1
    expected = (
        f'metricsmesh_build_info{{python="{platform.python_version()}",version="{INSTALLED}"}}'
    )
    assert f"{expected} 1.0" in response.text
