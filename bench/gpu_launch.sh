#!/usr/bin/env bash
# PPO under `accelerate launch` with the launch configs a user takes to GPUs, on the tiny simulated run:
#   bash bench/gpu_launch.sh [root]           (default root: runs/launch; one GPU is enough)
# 1. scrape -> build-data -> pretrain -> sft -> train-reward with configs/tiny.yaml, once (plain python);
# 2. the ppo stage under `accelerate launch --num_processes 1` with configs/accelerate/single_gpu.yaml, then with
#    deepspeed_zero2.yaml (needs `pip install deepspeed`), each in its own run folder sharing step 1's stages,
#    bf16, no gold control or baselines (PPO alone);
# 3. one line per launch: its exit status and PPO's last update (score, KL, gold).
# Without a GPU it checks the script itself: the first launch with --cpu, and DeepSpeed skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
ROOT=${1:-runs/launch}
mkdir -p "$ROOT/logs"
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
COMMON=(--config configs/tiny.yaml run.root="$ROOT" run.wandb.enabled=false)
PPO_ONLY=(rl.gold_control=false "rl.baselines=[]" ppo.bf16=true)
GPU=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")

for st in scrape build-data pretrain sft train-reward; do
  "$PY" -m pipelines "$st" "${COMMON[@]}" run.name=base >"$ROOT/logs/base.$st.log" 2>&1 \
    || { echo "base $st FAILED (see $ROOT/logs/base.$st.log)"; exit 1; }
done

launch() {  # NAME ACCELERATE_CONFIG [launch flags...]
  local name=$1 config=$2; shift 2
  mkdir -p "$ROOT/$name"
  for st in scrape build-data pretrain sft train-reward; do ln -sfn "../base/$st" "$ROOT/$name/$st"; done
  "$PY" -m accelerate.commands.launch --config_file "$config" --num_processes 1 "$@" -m pipelines ppo "${COMMON[@]}" \
    run.name="$name" "${PPO_ONLY[@]}" --force >"$ROOT/logs/$name.ppo.log" 2>&1
  local rc=$?
  "$PY" - "$ROOT/$name/ppo/metrics.json" "$name" "$rc" <<'PYEOF'
import json, sys
from pathlib import Path
path, name, rc = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
m = json.loads(path.read_text()) if path.is_file() and rc == "0" else {}
keys = ("objective/scores", "objective/kl", "objective/gold", "ppo/updates")
print(f"{name}: exit {rc}; " + ", ".join(f"{k} {m[k]:.3f}" for k in keys if k in m))
PYEOF
}

if [ "$GPU" = 1 ]; then
  launch single-gpu configs/accelerate/single_gpu.yaml
  if "$PY" -c "import deepspeed" 2>/dev/null; then
    launch zero2 configs/accelerate/deepspeed_zero2.yaml
  else
    echo "zero2: skipped (deepspeed is not installed)"
  fi
else
  launch single-cpu configs/accelerate/single_gpu.yaml --cpu
  echo "zero2: skipped (no GPU)"
fi
