"""The installed `metrics-mesh` console script, as the tests run it.

`METRICS_MESH` is its path beside this interpreter; `needs_cli` skips a test (or, as
`pytestmark`, a module) when it is not installed; `cli(*args)` runs it without blocking the
event loop that serves the test's mesh.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

METRICS_MESH = Path(sys.executable).with_name("metrics-mesh")
needs_cli = pytest.mark.skipif(not METRICS_MESH.exists(), reason="pip install -e . first")


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the real console script without blocking the loop that serves the fleet."""
    process = await asyncio.create_subprocess_exec(
        str(METRICS_MESH),
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "220", **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
