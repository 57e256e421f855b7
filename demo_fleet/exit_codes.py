"""The exit statuses demo processes agree on with their supervisor."""

from __future__ import annotations

from mesh_common.errors import EXIT_PORT_IN_USE, EXIT_USAGE

PLANNED_EXIT_STATUS = 75
"""A child exiting with this status misbehaves on purpose; it is restarted after its delay."""

STARTUP_FAILURE_STATUS = EXIT_PORT_IN_USE
"""A child that cannot bind its ports exits with this status."""

NO_RESTART_STATUSES = frozenset({EXIT_USAGE, STARTUP_FAILURE_STATUS})
"""Usage errors and unbindable ports: restarting would fail the same way."""
