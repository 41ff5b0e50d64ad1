#!/usr/bin/env bash
# The README's test command: set up the environment, then run the whole test suite
# (fast tests and the slow end-to-end ones). Pass extra pytest args through, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test-deps.sh
export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
# The tests' models are tiny: one torch thread is ~2x faster than two on a 2-core box (threads
# spin-wait on each other); override with OMP_NUM_THREADS=… for a bigger machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest --durations=15 "$@"
