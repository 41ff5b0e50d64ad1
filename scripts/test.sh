#!/usr/bin/env bash
# The README's test command: set up the environment, then run the whole test suite
# (fast tests and the slow end-to-end ones). Pass extra pytest args through, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test-deps.sh
export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
