#!/usr/bin/env bash
# Create/refresh the project virtualenv (.venv) with the CPU set. Idempotent.
# torch is installed FIRST as torch==2.13.0: on a CPU machine that resolves to the local CPU
# wheel, and the project's `torch>=2.3` range is then already satisfied, so pip never pulls
# the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,serve]"
.venv/bin/python -c "import torch, mlflow, transformers; print(f'setup ok: torch {torch.__version__}, mlflow {mlflow.__version__}, transformers {transformers.__version__}')"
