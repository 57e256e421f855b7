"""The `metrics-mesh` command line: demo fleet, aggregator, gateway, snapshot and top."""

from mesh_common import grpc_verbosity  # noqa: F401  # first: gRPC reads it on import
