#!/bin/sh
# One node --test run over every test file, so the output ends with one summary.
# Node 20 has no test globs: build the explicit file list with find.
set -eu
cd "$(dirname "$0")/.."
files=$(find packages services tests -name '*.test.ts' -not -path '*/node_modules/*' 2>/dev/null | sort)
if [ -z "$files" ]; then
  echo "no test files found" >&2
  exit 1
fi
# shellcheck disable=SC2086
exec node --import tsx --test --test-concurrency=2 --test-reporter=spec $files
