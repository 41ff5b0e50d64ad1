#!/usr/bin/env bash
# Things some tests need beyond the Python venv. Each step is optional: when it cannot be done
# (no network to the package registries), the tests that need it skip with a reason.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
# Real BFCL records for the matcher tests: read straight from the bfcl-eval wheel, never installed
# into .venv (it pins numpy 1.26).
if ! ls .cache/bfcl/bfcl_eval-*.whl >/dev/null 2>&1; then
  # the version the matcher was ported from (runners/eval/bfcl_match.py)
  .venv/bin/python -m pip download -q --no-deps -d .cache/bfcl "bfcl-eval==2026.3.23" || echo "warning: could not download bfcl-eval wheel"
fi
# Ray for the study executor test (a throwaway head + worker on 127.0.0.1): the `ray` extra.
.venv/bin/python -c "import ray" 2>/dev/null || .venv/bin/python -m pip install -q "ray==2.60.0" || echo "warning: no ray; the Ray executor test will skip"
# verl in its own venv (its transformers/numpy pins clash with .venv's, and its wheel installs
# top-level `tests`/`scripts` packages): ~200 s and 2.3 GB the first time, a no-op afterwards.
bash scripts/setup-verl-venv.sh || echo "warning: .venv-verl unavailable; tests/test_verl_venv.py will skip"
# BFCL's own CLI in its own venv (it pins numpy 1.26) for the end-to-end BFCL test against
# `transformers serve`; --light skips sentence-transformers/faiss (they would pull CUDA torch).
[ -x .venv-bfcl/bin/bfcl ] || bash scripts/setup-bfcl-venv.sh --light || echo "warning: no .venv-bfcl; the BFCL end-to-end test will skip"
# ms-swift in its own venv (CPU torch held by a constraint) so swift's own argument parser checks
# the generated `swift sft` / `swift export` commands and the imported hardtry SFT directories:
# ~11 min and 2.2 GB the first time (~3 min with a warm pip cache), a no-op afterwards.
bash scripts/setup-swift-venv.sh || echo "warning: no .venv-swift; the swift-parser tests will skip"
