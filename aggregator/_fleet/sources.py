"""The sources of an aggregator's fleet, in priority order, from its configuration."""

from __future__ import annotations

import os
from pathlib import Path

from aggregator._fleet.file_sd import FileSd
from aggregator._fleet.http_sd import HttpSd
from aggregator._fleet.registration_state import FILE_NAME, RegistrationState
from aggregator._fleet.registrations import Registrations
from aggregator._fleet.registry_file import RegistryFile
from aggregator._fleet.settings import DiscoverySettings
from aggregator._fleet.source import FleetSource, StaticSource
from mesh_common.clocks import Clocks
from mesh_common.registry import Registry


def fleet_sources(
    registry: Registry,
    *,
    config_path: str | os.PathLike[str] | None,
    discovery: DiscoverySettings,
    clocks: Clocks,
    state_dir: str | None = None,
) -> list[FleetSource]:
    """The sources, first the one that wins a name (`merge`).

    The mesh file's `[[services]]` (watched) or, without a file, `registry` as given; then
    the file_sd files (one source for every pattern), then each http_sd URL, then with
    `accept_registrations` the self-registered agents (kept in `state_dir` when given).
    """
    sources: list[FleetSource] = [
        StaticSource(registry)
        if config_path is None
        else RegistryFile(config_path, registry, clocks=clocks)
    ]
    if discovery.file_sd:
        sources.append(FileSd(discovery.file_sd, clocks=clocks, max_bytes=discovery.max_bytes))
    sources.extend(
        HttpSd(
            url,
            clocks=clocks,
            refresh_seconds=discovery.http_sd_refresh_seconds,
            timeout_seconds=discovery.http_sd_timeout_seconds,
            max_bytes=discovery.max_bytes,
        )
        for url in discovery.http_sd
    )
    if discovery.accept_registrations:
        state = None if state_dir is None else RegistrationState(Path(state_dir) / FILE_NAME)
        sources.append(Registrations(discovery, clocks=clocks, state=state))
    return sources
