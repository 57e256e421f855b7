"""gRPC core's own log lines: ERROR and worse unless `GRPC_VERBOSITY` says otherwise.

gRPC's core writes its own lines to stderr, past Python's logging (plain text, even in the
json format): an INFO line per failed TLS handshake, so one per reconnect attempt to a peer
that disagrees about TLS, or "Got goaway" when an agent goes away mid-stream. The mesh logs
those events itself, once, in its format (a row's status change names the TLS reason).
gRPC reads `GRPC_VERBOSITY` once, when `grpc` is imported, so this module sets its default
on import and the programs' packages (`aggregator`, `gateway`, `metricsmesh_cli`) import it
before anything that imports grpc. A value set in the environment is kept.
"""

from __future__ import annotations

import os

DEFAULT = "ERROR"
"""The verbosity of gRPC's core in the mesh's programs unless GRPC_VERBOSITY is set."""

os.environ.setdefault("GRPC_VERBOSITY", DEFAULT)
