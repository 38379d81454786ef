#!/usr/bin/env bash
# The ppo stage under the launch configs a user takes to GPUs, side by side on the same finished run:
#   bash bench/gpu_launch.sh [root]                      (default root: runs/launch; one GPU is enough)
# env: CONFIG  experiment config (default configs/tiny.yaml)
#      BASE    a finished run folder whose build-data / sft / train-reward the launches share
#              (default: made here with CONFIG under root/base: scrape -> build-data -> pretrain -> sft -> train-reward)
#      EXTRA   more overrides for every ppo launch (e.g. "ppo.total_episodes=320")
# Launches, each in its own run folder, PPO alone (no gold control, no baselines), bf16 on a GPU:
#   plain          python -m pipelines ppo (no launcher)
#   single-gpu     accelerate launch, configs/accelerate/single_gpu.yaml
#   zero2          accelerate launch, configs/accelerate/deepspeed_zero2.yaml with 1 process (needs deepspeed)
#   zero2-resumed  zero2's older kept checkpoint copied into a fresh folder and launched again: it resumes
#   ddp, zero2-multi   with 2+ GPUs: multi_gpu_ddp.yaml and deepspeed_zero2.yaml with one process per GPU
#                  (the global batch grows with the processes, so the same total_episodes gives fewer updates)
# One line per launch: exit status, wall seconds, the mean of the last 5 updates (score, KL, gold),
# episodes/s and peak GPU memory; for zero2-resumed, its first update beside zero2's same update.
# Without a GPU it checks the script itself on the CPU (fp32; single-gpu with --cpu).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
ROOT=${1:-runs/launch}
CONFIG=${CONFIG:-configs/tiny.yaml}
read -r -a EXTRA_ARGS <<<"${EXTRA:-}"
mkdir -p "$ROOT/logs"
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
COMMON=(--config "$CONFIG" run.root="$ROOT" run.wandb.enabled=false)
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
GPU=$([ "$NGPU" -ge 1 ] && echo 1 || echo 0)
PPO_ONLY=(rl.gold_control=false "rl.baselines=[]" ppo.bf16=$([ "$GPU" = 1 ] && echo true || echo false) "${EXTRA_ARGS[@]}")
STAGES=(scrape build-data pretrain sft train-reward)

if [ -z "${BASE:-}" ]; then
  BASE=$ROOT/base
  for st in "${STAGES[@]}"; do
    "$PY" -m pipelines "$st" "${COMMON[@]}" run.name=base >"$ROOT/logs/base.$st.log" 2>&1 \
      || { echo "base $st FAILED (see $ROOT/logs/base.$st.log)"; exit 1; }
  done
fi
BASE=$(cd "$BASE" && pwd)

link_base() {  # NAME: a run folder whose upstream stages are BASE's
  mkdir -p "$ROOT/$1"
  for st in "${STAGES[@]}"; do [ -e "$BASE/$st" ] && ln -sfn "$BASE/$st" "$ROOT/$1/$st"; done
}

report() {  # NAME EXIT_STATUS SECONDS
  "$PY" - "$ROOT" "$@" <<'PYEOF'
import json, sys
from pathlib import Path
root, name, rc, seconds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

def curve(run):
    path = root / run / "ppo" / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return {r["step"]: r for r in rows if "objective/scores" in r}

rows = curve(name)
line = f"{name}: exit {rc}, {seconds} s"
if rows:
    last = [rows[s] for s in sorted(rows)[-5:]]
    mean = lambda k: sum(r.get(k, float("nan")) for r in last) / len(last)
    line += (f", updates {min(rows)}-{max(rows)}; last 5: score {mean('objective/scores'):+.3f} "
             f"KL {mean('objective/kl'):.3f} gold {mean('objective/gold'):.3f}; "
             f"{mean('episodes_per_second'):.1f} episodes/s")
    if "memory/peak_gb" in last[-1]:
        line += f", peak {last[-1]['memory/peak_gb']:.2f} GB"
    if name.endswith("-resumed"):
        first, full = min(rows), curve(name.removesuffix("-resumed"))
        if first in full:
            keys = ("objective/scores", "objective/kl", "ppo/loss/value", "ppo/policy/approxkl_avg")
            line += f"\n  update {first}, resumed vs uninterrupted: " + ", ".join(
                f"{k.split('/')[-1]} {rows[first][k]:.4f} vs {full[first][k]:.4f}" for k in keys)
print(line)
PYEOF
}

launch() {  # NAME FORCE COMMAND...: run the ppo stage in ROOT/NAME (linked to BASE's stages)
  local name=$1 force=$2; shift 2
  local start=$SECONDS
  link_base "$name"
  "$@" -m pipelines ppo "${COMMON[@]}" run.name="$name" "${PPO_ONLY[@]}" $force >"$ROOT/logs/$name.ppo.log" 2>&1
  report "$name" $? $((SECONDS - start))
}

ACCEL=("$PY" -m accelerate.commands.launch --num_processes 1)
launch plain --force "$PY"
if [ "$GPU" = 1 ]; then
  launch single-gpu --force "${ACCEL[@]}" --config_file configs/accelerate/single_gpu.yaml
else
  launch single-gpu --force "${ACCEL[@]}" --config_file configs/accelerate/single_gpu.yaml --cpu
fi
if [ "$NGPU" -ge 2 ]; then
  launch ddp --force "$PY" -m accelerate.commands.launch --num_processes "$NGPU" \
    --config_file configs/accelerate/multi_gpu_ddp.yaml
fi
if ! "$PY" -c "import deepspeed" >/dev/null 2>&1; then
  echo "zero2: skipped (deepspeed is not installed: pip install -e '.[deepspeed]')"
  exit 0
fi
if [ "$NGPU" -ge 2 ]; then
  launch zero2-multi --force "$PY" -m accelerate.commands.launch --num_processes "$NGPU" \
    --config_file configs/accelerate/deepspeed_zero2.yaml
fi
ZERO2=("${ACCEL[@]}" --config_file configs/accelerate/deepspeed_zero2.yaml)
[ "$GPU" = 1 ] || ZERO2+=(--mixed_precision no)
launch zero2 --force "${ZERO2[@]}"
kept=("$ROOT"/zero2/ppo/checkpoints/step-*[0-9])
if [ "${#kept[@]}" -ge 2 ] && [ -d "${kept[0]}" ]; then  # the glob sorts: kept[0] is the older
  rm -rf "$ROOT/zero2-resumed"
  mkdir -p "$ROOT/zero2-resumed/ppo/checkpoints"
  cp -r "${kept[0]}" "$ROOT/zero2-resumed/ppo/checkpoints/"
  launch zero2-resumed "" "${ZERO2[@]}"
else
  echo "zero2-resumed: skipped (zero2 kept fewer than 2 checkpoints; set ppo.save_every below the run's updates)"
fi
