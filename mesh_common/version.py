"""The installed version of metrics-mesh, read once from the package metadata.

`--version` on every program (`mesh_common.options.add_version_option`), the gateway's
`metricsmesh_build_info` series and its OpenAPI document all read it here, so they cannot
disagree.
"""

from __future__ import annotations

import functools
import platform
from importlib import metadata

DISTRIBUTION = "metrics-mesh"
"""The name the project is installed under (pyproject's `[project] name`)."""
UNKNOWN = "0+unknown"
"""The version said when the package metadata is missing (sources run without installing)."""


@functools.cache
def version() -> str:
    """The installed distribution's version, e.g. `0.1.0` (`0+unknown` if not installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def version_line() -> str:
    """What `--version` prints: `metrics-mesh 0.1.0`."""
    return f"{DISTRIBUTION} {version()}"


def python_version() -> str:
    """The running interpreter's version, e.g. `3.11.2` (a label of the build-info series)."""
    return platform.python_version()
