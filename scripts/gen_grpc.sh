#!/usr/bin/env bash
# Regenerate memory_service/grpc/memory_pb2*.py from memory.proto (grpcio-tools, dev only);
# the generated code is committed so the runtime needs grpcio and protobuf only.
set -euo pipefail
cd "$(dirname "$0")/.."
uv run python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
    memory_service/grpc/memory.proto
