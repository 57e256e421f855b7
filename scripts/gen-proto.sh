#!/usr/bin/env bash
# Generates Python messages, gRPC stubs and type stubs for proto/ into the folder given
# (generated/ by default). Uses the pinned grpcio-tools and mypy-protobuf of the virtualenv,
# so the output is the same on every machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-generated}
bin=${VENV_BIN:-.venv/bin}
mkdir -p "$out/metricsmesh/v1"
PATH="$bin:$PATH" "$bin/python" -m grpc_tools.protoc \
  -I proto \
  --python_out="$out" \
  --grpc_python_out="$out" \
  --mypy_out="$out" \
  --mypy_grpc_out="$out" \
  proto/metricsmesh/v1/*.proto
printf '"""Generated protobuf code for the metrics-mesh contracts (do not edit)."""\n' \
  > "$out/metricsmesh/__init__.py"
printf '"""metricsmesh.v1: generated from proto/metricsmesh/v1 by scripts/gen-proto.sh."""\n' \
  > "$out/metricsmesh/v1/__init__.py"
: > "$out/metricsmesh/py.typed"
