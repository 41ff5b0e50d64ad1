#!/usr/bin/env bash
# The README's main job: the CPU demo pipeline. Runs GRPO then EGPO on synthetic tool-calling
# data (convert → sft → train → merge → eval), the second reusing the first's convert and sft
# stages, and the SFT baseline (demo-sft: the same SFT model evaluated alone), then compares them
# and writes report.html. Results land in ./mlflow.db; browse with
#   .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}
# --env-manager local: run in the venv just built (plain `mlflow run . -P spec=…` builds its
# own env from python_env.yaml the first time, which takes several minutes).
mlflow run . -P spec=demo-grpo --env-manager local --experiment-name rlreg-demo
mlflow run . -P spec=demo-egpo --env-manager local --experiment-name rlreg-demo
# the baseline: the shared SFT model evaluated on the same prompts and seeds (cache hits for convert/sft)
mlflow run . -P spec=demo-sft --env-manager local --experiment-name rlreg-demo
# The verdicts: both RL arms against the SFT model they started from (paired per prompt: same
# eval records and seeds), then EGPO against GRPO. One training seed per arm here, so the
# intervals cover prompts, not training seeds: `rlreg study run study-grpo-vs-egpo` adds seeds.
echo; echo "== RL vs SFT (each arm minus demo-sft) =="
rlreg compare demo-sft demo-grpo demo-egpo --primary eval/accuracy_mean
echo; echo "== EGPO vs GRPO =="
rlreg compare demo-grpo demo-egpo --primary eval/accuracy_mean
rlreg report demo-sft demo-grpo demo-egpo -o report.html
echo "Report: $(pwd)/report.html"
