#!/usr/bin/env bash
# Tools that validate deploy/ without a Docker engine or a cluster (tests/deploy uses them):
#   docker compose  built from its Go module (github.com/docker/compose/v2), because
#                   `compose config` renders and checks a compose file without an engine
#   kustomize       built from its Go module (sigs.k8s.io/kustomize/kustomize/v5)
#   traefik         built from its Go module (github.com/traefik/traefik/v3) by
#                   `hanzo traefik install`, into ~/.cache/hanzo/traefik/<version>/: the
#                   gateway e2e suite runs through it as `hanzo gateway install` writes it
# Both land in ${HANZO_CACHE_DIR:-~/.cache/hanzo}/deploy-tools/bin, outside the repo, and are
# built once: re-running is a no-op. The compose binary is also linked as a docker CLI
# plugin so `docker compose` works when the docker CLI is installed. Needs Go and the Go
# module proxy. Kubernetes schemas come from the kubernetes-validate dev dependency (PyPI).
set -euo pipefail

COMPOSE_VERSION=v2.40.3
KUSTOMIZE_VERSION=v5.8.0

cache="${HANZO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hanzo}/deploy-tools"
bin="$cache/bin"
mkdir -p "$bin"
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "install-deploy-tools: Go is required" >&2; exit 1; }

if ! "$bin/docker-compose" version 2>/dev/null | grep -q "${COMPOSE_VERSION#v}"; then
  echo "building docker compose $COMPOSE_VERSION (a few minutes the first time)"
  # `go install` refuses this module (its go.mod has exclude directives), so build it
  # from a writable copy of the downloaded module.
  dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  src="$cache/src/compose-$COMPOSE_VERSION"
  rm -rf "$src" && mkdir -p "$cache/src" && cp -r "$dir" "$src" && chmod -R u+w "$src"
  (cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
     -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
     -o "$bin/docker-compose.partial" ./cmd)
  mv "$bin/docker-compose.partial" "$bin/docker-compose"
  rm -rf "$src"
fi

plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"
ln -sfn "$bin/docker-compose" "$plugins/docker-compose"

if ! "$bin/kustomize" version 2>/dev/null | grep -q "$KUSTOMIZE_VERSION"; then
  echo "building kustomize $KUSTOMIZE_VERSION"
  GOBIN="$bin" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi

uv run --frozen hanzo traefik install

echo "deploy tools: $("$bin/docker-compose" version), kustomize $("$bin/kustomize" version)"
