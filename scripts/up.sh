#!/usr/bin/env bash
# The run command: install what is missing, then start the whole stack on embedded
# defaults (`hanzo up`). Stop it with `uv run hanzo down`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec uv run hanzo up "$@"
