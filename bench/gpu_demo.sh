#!/usr/bin/env bash
# The whole demo pipeline on one GPU with a Pythia-160M-shaped policy and reward model built from a config
# (configs/gpu_demo.yaml: 12 x 768 GPT-NeoX, bf16, no download):
#   bash bench/gpu_demo.sh [root]                    (default root: runs/gpu_demo; ~10 min on one H200)
#   SIZE=tiny bash bench/gpu_demo.sh [root]          the same steps on configs/tiny.yaml with a GPT-NeoX policy:
#                                                    a check of the script on a CPU (about 2 minutes here)
# env: EXTRA  more dotted overrides for the pipeline (e.g. "ppo.total_episodes=320")
# Steps:
#   1. bench/gpu_device_check.py: the tiny pipeline inside ForwardAudit; fails if any model of any stage ran
#      off the device (cuda when torch sees a GPU, else cpu) or was never placed by the device rule
#   2. python -m pipelines demo --config CONFIG: every stage, each writing devices.json and metrics.json
#   3. bench/gpu_demo_summary.py: per stage wall time, peak GPU memory, throughput (rows/s, reward-model
#      pairs/s, PPO episodes/s and generation tokens/s, RLOO/GRPO completions/s, eval-policy generation
#      tokens/s) and the device and dtype of every model; also ROOT/summary.json
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
ROOT=${1:-runs/gpu_demo}
SIZE=${SIZE:-full}
read -r -a EXTRA_ARGS <<<"${EXTRA:-}"
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$ROOT/logs"
DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
if [ "$SIZE" = tiny ]; then
  CONFIG=configs/tiny.yaml
  NAME=gpu_demo_tiny
  SHAPE=(policy.architecture=gpt_neox run.device="$DEVICE" run.dtype=bfloat16 ppo.bf16=$([ "$DEVICE" = cuda ] && echo true || echo false))
else
  [ "$DEVICE" = cuda ] || { echo "no GPU (torch.cuda.is_available() is False): use SIZE=tiny to check the script"; exit 1; }
  CONFIG=configs/gpu_demo.yaml
  NAME=gpu_demo
  SHAPE=()
fi
"$PY" -c "import torch, transformers, trl; print(f'torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, ' + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'))"
echo "commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown), config $CONFIG ${SHAPE[*]} ${EXTRA_ARGS[*]}"

# 1. every model of every stage on the device (tiny pipeline, audited)
t0=$SECONDS
if "$PY" bench/gpu_device_check.py --device "$DEVICE" --root "$ROOT/device_check" policy.architecture=gpt_neox \
    >"$ROOT/logs/device_check.log" 2>&1; then
  echo "device check: every model of every stage ran on $DEVICE ($((SECONDS - t0)) s; $ROOT/logs/device_check.log)"
else
  echo "device check FAILED:"; grep -E "OFF THE RULE|Error|error" "$ROOT/logs/device_check.log" | tail -20; exit 1
fi

# 2. the demo pipeline
t0=$SECONDS
if ! "$PY" -m pipelines demo --config "$CONFIG" run.root="$ROOT" run.name="$NAME" run.wandb.enabled=false \
    "${SHAPE[@]}" "${EXTRA_ARGS[@]}" >"$ROOT/logs/demo.log" 2>&1; then
  echo "pipeline FAILED after $((SECONDS - t0)) s:"; tail -30 "$ROOT/logs/demo.log"; exit 1
fi
echo "pipeline: $((SECONDS - t0)) s ($ROOT/logs/demo.log)"

# 3. per-stage numbers
"$PY" bench/gpu_demo_summary.py "$ROOT/$NAME" --out "$ROOT/summary.json"
