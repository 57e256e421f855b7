"""metricsmesh.v1: generated from proto/metricsmesh/v1 by scripts/gen-proto.sh."""
