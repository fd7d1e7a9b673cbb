#!/usr/bin/env bash
# The main job: bootstrap, make the default synthetic model once (under .expertmesh/models/),
# then run it. Extra arguments go to `expertmesh generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
model=.expertmesh/models/tiny
if [ ! -f "$model/config.json" ]; then
  pnpm --silent expertmesh make-model --preset tiny --seed 1 --out "$model"
fi
if [ $# -eq 0 ]; then set -- --prompt "ExpertMesh says hello" --max-tokens 24; fi
exec pnpm --silent expertmesh generate --model "$model" "$@"
