#!/usr/bin/env bash
# The test command: bootstrap, buf lint + generated code fresh, prettier, typecheck + lint (turbo),
# then ONE node --test run over every test file so the output ends with one summary.
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
bash scripts/bootstrap.sh --tests
pnpm run --silent proto:lint
pnpm run --silent proto:check
pnpm run --silent format:check
pnpm exec turbo run typecheck lint --output-logs=errors-only
exec sh scripts/run-tests.sh
