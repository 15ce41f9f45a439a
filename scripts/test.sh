#!/usr/bin/env bash
# The test command: install what is missing, then run the whole suite against real
# servers (Casdoor, nginx, Caddy, Valkey+RediSearch) that the fixtures start on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# docker compose and kustomize (from the Go module proxy): tests/deploy validates deploy/
bash scripts/install-deploy-tools.sh
uv run ruff check .
exec uv run pytest "$@"
