"""The sources of an aggregator's fleet, in priority order, from its configuration."""

from __future__ import annotations

import os

from aggregator._fleet.registry_file import RegistryFile
from aggregator._fleet.source import FleetSource, StaticSource
from mesh_common.clocks import Clocks
from mesh_common.registry import Registry


def fleet_sources(
    registry: Registry, *, config_path: str | os.PathLike[str] | None, clocks: Clocks
) -> list[FleetSource]:
    """The mesh file's `[[services]]` (watched) or, without a file, `registry` as given."""
    first: FleetSource = (
        StaticSource(registry)
        if config_path is None
        else RegistryFile(config_path, registry, clocks=clocks)
    )
    return [first]
