#!/usr/bin/env bash
# Create .venv-verl: verl in its own environment, CPU-only.
#
# Why a separate venv: verl 0.9.1 pins transformers<5.11 and numpy>=2, and its wheel installs
# top-level `tests` and `scripts` packages into site-packages (they would shadow the project's
# own). The project talks to verl only through subprocesses (`<venv>/bin/python ...`).
#
# What this venv is for here (CPU): Hydra composition of verl's `ppo_trainer` config,
# `verl.utils.config.validate_config`, and the EGPO plugin tests through verl's own registry.
# The GPU environment for real training is documented in docs/verl.md (verl[vllm] pins its own
# CUDA torch; never install that here).
#
# Order matters: the CPU torch wheel goes in FIRST and is then held by a constraint, so nothing
# verl pulls (accelerate, peft, tensordict, torchdata) can replace it with a CUDA build.
#
# Usage: scripts/setup-verl-venv.sh [--gpu] [VENV_DIR]     (default: <repo>/.venv-verl)
#   --gpu  on a CUDA machine: `verl[vllm]` with the torch/vLLM/transformers versions verl pins
#          (torch 2.11 CUDA, vllm 0.24) instead of the CPU torch — for real training runs.
# Env:   PYTHON (default python3.11, else python3), FORCE=1 (reinstall), TORCH_SPEC (default torch==2.13.0), VERL_VERSION (0.9.1)
set -euo pipefail

GPU=0
if [[ "${1:-}" == "--gpu" ]]; then
  GPU=1
  shift
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-verl}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
VERL_VERSION="${VERL_VERSION:-0.9.1}"
MLFLOW_VERSION="${MLFLOW_VERSION:-3.17.2}"

# Already complete at these pins? (metadata only: importing verl takes tens of seconds)
if [[ -x "$VENV/bin/python" && "${FORCE:-0}" != 1 ]] && "$VENV/bin/python" - "$VERL_VERSION" "$MLFLOW_VERSION" "$GPU" <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
assert md.version("verl") == sys.argv[1] and md.version("mlflow") == sys.argv[2]
md.version("TransferQueue"), md.version("cachetools")
if sys.argv[3] == "1":
    md.version("vllm")
EOF
then
  echo "$VENV already has verl $VERL_VERSION + mlflow $MLFLOW_VERSION (FORCE=1 to reinstall)"
  exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "$TORCH_SPEC" >"$constraints"

if [[ $GPU == 1 ]]; then
  # verl's own pins for a vLLM rollout; flash-attn is optional (verl[fsdp] adds the cu130 wheel)
  "${PIP[@]}" install -q "verl[vllm]==$VERL_VERSION"
  : >"$constraints"
else
  # 1. CPU torch first (from the local wheel dir / PIP_FIND_LINKS when present).
  "${PIP[@]}" install -q "$TORCH_SPEC"
  # 2. verl with its base requirements (no vllm/sglang/flash-attn: those live in extras), torch held.
  "${PIP[@]}" install -q -c "$constraints" "verl==$VERL_VERSION"
fi
# 3. What importing verl's trainers needs beyond the base requirements (from verl's `verl-core`
#    extra: the v1 trainer imports transfer_queue, the legacy one cachetools), and the project's
#    MLflow pin: verl's `mlflow` logger imports mlflow, and a client must match the store's schema.
"${PIP[@]}" install -q -c "$constraints" "TransferQueue>=0.1.10" cachetools msgspec pyzmq \
  "mlflow==$MLFLOW_VERSION" "mlflow-skinny==$MLFLOW_VERSION" "mlflow-tracing==$MLFLOW_VERSION"

"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import torch, verl
from verl.utils.config import validate_config  # noqa: F401  (the check rlreg runs)
from verl.trainer.ppo.core_algos import register_adv_est  # noqa: F401  (the plugin hook)
import verl.trainer.ppo.v1.trainer_base, verl.trainer.ppo.ray_trainer  # noqa: F401,E401  (patched by the plugin)
import mlflow
print(f"verl {md.version('verl')}  torch {torch.__version__}  mlflow {mlflow.__version__}  cuda={torch.cuda.is_available()}")
EOF
end=$(date +%s)
echo "created $VENV in $((end - start)) s, size $(du -sh "$VENV" | cut -f1)"
