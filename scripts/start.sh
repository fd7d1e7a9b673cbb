#!/usr/bin/env bash
# The main job: bootstrap, then start a local ExpertMesh cluster on the default synthetic model
# (Redis, expert workers, attention nodes — and the router once it exists), print where
# everything listens, stream logs; Ctrl-C stops it all. Extra arguments go to `expertmesh up`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ $# -eq 0 ]; then set -- --preset tiny; fi
exec pnpm --silent expertmesh up "$@"
