"""Seed 003's environment variable names, read as the mesh's own overrides.

Seed 003 configures its service through the environment (`CORS_ORIGINS`, a comma-separated
list; `JWT_SECRET_KEY`; `WEBSOCKET_MAX_CONNECTIONS`). A deployment written for it keeps those
names: each one sets the mesh key below, exactly as its `METRICS_MESH_*` variable would.
Setting both names to different values is a ConfigError naming both, never a silent pick.
Seed 003's other names (`DATABASE_URL`, `REDIS_URL`, `RATE_LIMIT_PER_MINUTE`, ...) configure
parts the mesh does not have or counts differently; they are not read.
"""

from __future__ import annotations

from collections.abc import Mapping

from mesh_common.errors import ConfigError

SEED_NAMES = {
    "CORS_ORIGINS": "METRICS_MESH_GATEWAY_CORS_ORIGINS",
    "JWT_SECRET_KEY": "METRICS_MESH_AUTH_JWT_SECRET",
    "WEBSOCKET_MAX_CONNECTIONS": "METRICS_MESH_GATEWAY_MAX_WS_CLIENTS",
}
"""Seed 003's variable -> the mesh's override it stands for."""


def with_seed_names(environ: Mapping[str, str]) -> Mapping[str, str]:
    """`environ` with seed 003's variables copied to the mesh's names (module docstring)."""
    present = [name for name in SEED_NAMES if name in environ]
    if not present:
        return environ
    merged = dict(environ)
    for name in present:
        ours = SEED_NAMES[name]
        if ours in environ and environ[ours] != environ[name]:
            raise ConfigError(
                f"environment {name} and {ours} set the same key to different values; "
                "unset one of them"
            )
        merged[ours] = environ[name]
    return merged
