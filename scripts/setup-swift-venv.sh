#!/usr/bin/env bash
# Create .venv-swift: ms-swift in its own environment, CPU-only.
#
# Why a separate venv: ms-swift pins its own transformers/peft/trl ranges and pulls many
# packages (modelscope, datasets, gradio-free core); the project talks to swift only through
# subprocesses (`<venv>/bin/swift sft ...`), like verl. On CPU this venv is for validating the
# generated command lines with swift's own argument parser (tests/test_sft_swift.py); a GPU
# machine installs ms-swift with its CUDA torch instead (docs/models.md).
#
# Order matters: the CPU torch wheel goes in FIRST and is then held by a constraint, so nothing
# ms-swift pulls can replace it with a CUDA build.
#
# Usage: scripts/setup-swift-venv.sh [VENV_DIR]     (default: <repo>/.venv-swift)
# Env:   PYTHON (default python3.11, else python3), FORCE=1, TORCH_SPEC (torch==2.13.0), SWIFT_VERSION (4.6.0)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-swift}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
SWIFT_VERSION="${SWIFT_VERSION:-4.6.0}"
MLFLOW_VERSION="${MLFLOW_VERSION:-3.17.2}"

if [[ -x "$VENV/bin/swift" && "${FORCE:-0}" != 1 ]] && "$VENV/bin/python" - "$SWIFT_VERSION" <<'PY' 2>/dev/null
import importlib.metadata as md, sys
assert md.version("ms-swift") == sys.argv[1]
PY
then
  echo "$VENV already has ms-swift $SWIFT_VERSION (FORCE=1 to reinstall)"
  exit 0
fi

start=$(date +%s)
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "$TORCH_SPEC" >"$constraints"
# 1. CPU torch first (PIP_FIND_LINKS / a local wheel dir when present).
"${PIP[@]}" install -q "$TORCH_SPEC"
# 2. ms-swift with torch held; mlflow at the project's pin (swift's --report_to mlflow goes
#    through transformers' MLflowCallback, and the client must match the store's schema).
"${PIP[@]}" install -q -c "$constraints" "ms-swift==$SWIFT_VERSION" "mlflow==$MLFLOW_VERSION"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import torch
from swift.arguments import SftArguments  # noqa: F401  (the parser rlreg's test runs)
print(f"ms-swift {md.version('ms-swift')}  torch {torch.__version__}  cuda={torch.cuda.is_available()}")
PY
end=$(date +%s)
echo "created $VENV in $((end - start)) s, size $(du -sh "$VENV" | cut -f1)"
