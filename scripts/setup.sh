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
# pip's per-package notes about this machine's local index mirrors are noise, not errors.
quiet_pip() { .venv/bin/python -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet_pip "torch==2.13.0"
quiet_pip -e ".[dev,serve]"
.venv/bin/python -c "import torch, mlflow, transformers; print(f'setup ok: torch {torch.__version__}, mlflow {mlflow.__version__}, transformers {transformers.__version__}')"
