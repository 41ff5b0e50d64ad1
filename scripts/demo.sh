#!/usr/bin/env bash
# The README's main job: the CPU demo pipeline on synthetic tool-calling data. demo-sft runs
# convert → sft → eval (the SFT model alone: the baseline); then GRPO (demo-grpo) and EGPO
# (demo-egpo) each run train → merge → eval from that SFT model (convert and sft are cache hits),
# side by side, one per core. Then both verdicts and report.html. Results land in ./mlflow.db; browse with
#   .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}
# --env-manager local: run in the venv just built (plain `mlflow run . -P spec=…` builds its
# own env from python_env.yaml the first time, which takes several minutes).
mlflow run . -P spec=demo-sft --env-manager local --experiment-name rlreg-demo
# The two RL arms share nothing they write (their own train/merge/eval stages), so they run as two
# processes; each logs to demo-logs/<spec>.log, and the script stops with the first failure's log.
mkdir -p demo-logs
echo; echo "== training GRPO and EGPO side by side (logs: demo-logs/demo-grpo.log, demo-logs/demo-egpo.log) =="
arms=(demo-grpo demo-egpo)
pids=()
for spec in "${arms[@]}"; do
  mlflow run . -P spec=$spec --env-manager local --experiment-name rlreg-demo > demo-logs/$spec.log 2>&1 &
  pids+=($!)
done
status=0
for i in "${!arms[@]}"; do
  spec=${arms[$i]}
  if wait "${pids[$i]}"; then
    tail -n 12 demo-logs/$spec.log
  else
    status=1; echo "Error: $spec failed; the end of demo-logs/$spec.log:" >&2; tail -n 40 demo-logs/$spec.log >&2
  fi
done
[ $status = 0 ] || exit 1
# The verdicts: both RL arms against the SFT model they started from (paired per prompt: same
# eval records and seeds), then EGPO against GRPO. One training seed per arm here, so the
# intervals cover prompts, not training seeds: `rlreg study run study-grpo-vs-egpo` adds seeds.
echo; echo "== RL vs SFT (each arm minus demo-sft) =="
rlreg compare demo-sft demo-grpo demo-egpo --primary eval/accuracy_mean
echo; echo "== EGPO vs GRPO =="
rlreg compare demo-grpo demo-egpo --primary eval/accuracy_mean
rlreg report demo-sft demo-grpo demo-egpo -o report.html
echo "Report: $(pwd)/report.html"
