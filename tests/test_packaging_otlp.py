"""metrics-mesh and OpenTelemetry install together: a service that already uses OpenTelemetry
can embed our agent (and point its OTLP exporter at the mesh).

One fresh virtualenv, one `pip install` of this checkout, `opentelemetry-sdk` and
`opentelemetry-exporter-otlp` (pip's resolver must find versions all three accept), then both
import in it. pip runs from the test's own environment (`pip --python`) with its cache, so no
pip is installed into the new one.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMPORTS = (
    "import agent, aggregator, gateway; "
    "from aggregator._ingest.otlp import export; "
    "from opentelemetry.sdk.metrics import MeterProvider; "
    "from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter; "
    "from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter; "
    "print('both import')"
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_metrics_mesh_and_opentelemetry_install_into_one_virtualenv(tmp_path: Path) -> None:
    target = tmp_path / "env"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
            "--disable-pip-version-check", str(ROOT), "opentelemetry-sdk",
            "opentelemetry-exporter-otlp",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    imported = subprocess.run(
        [str(python), "-c", IMPORTS], capture_output=True, text=True, timeout=60, check=False
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert imported.stdout.strip() == "both import"
