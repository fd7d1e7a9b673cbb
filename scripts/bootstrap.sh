#!/usr/bin/env bash
# Installs whatever this machine lacks to build, test and run ExpertMesh:
# pnpm, Debian's redis-server (and python3-grpcio for the independent-client tests),
# then the workspace dependencies. Safe to run again: it skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=10.34.8
want_tests=${1:-}

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "bootstrap: '$*' needs root (no sudo found)" >&2; exit 1; fi
}

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "bootstrap: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if ! command -v pnpm >/dev/null || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "bootstrap: installing pnpm $PNPM_VERSION" >&2
  need_root npm install -g --no-fund --no-audit "pnpm@$PNPM_VERSION" >&2
fi

apt_packages=()
command -v redis-server >/dev/null || apt_packages+=(redis-server)
if [ "$want_tests" = "--tests" ] && ! /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null; then
  apt_packages+=(python3-grpcio python3-protobuf)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${apt_packages[*]} (apt-get)" >&2
    need_root apt-get update -qq >&2
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >&2
  else
    echo "bootstrap: please install: ${apt_packages[*]}" >&2
    exit 1
  fi
fi

pnpm install --frozen-lockfile >&2
