#!/usr/bin/env bash
# Things some tests need beyond the Python venv. Each step is optional: when it cannot be done
# (no network to the package registries), the tests that need it skip with a reason.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
# Real BFCL records for the matcher tests: read straight from the bfcl-eval wheel, never installed
# into .venv (it pins numpy 1.26).
if ! ls .cache/bfcl/bfcl_eval-*.whl >/dev/null 2>&1; then
  .venv/bin/python -m pip download -q --no-deps -d .cache/bfcl bfcl-eval || echo "warning: could not download bfcl-eval wheel"
fi
