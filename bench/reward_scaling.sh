#!/usr/bin/env bash
# Is the demo reward model's gap to the Bayes ceiling a matter of training steps, model size or data?
#
#   bash bench/reward_scaling.sh [root]        (default root: runs/scaling; a GPU makes it take minutes)
#   QUICK=1 bash bench/reward_scaling.sh       (toy step counts: checks the script on a CPU)
#
# Runs the pipeline's own stages with configs/demo.yaml and command-line overrides, one chain per variant,
# the chains side by side (one GPU holds them all), then prints one row per variant from each
# train-reward/metrics.json. Stages a variant shares with `base` are symlinked, not recomputed.
#   base       the demo recipe (2 x 256 policy, reward model from it, 1 epoch)
#   ep3        the same reward model, 3 epochs
#   big        6 x 512 policy (SFT) and a reward model initialized from it, 1 epoch
#   data3      a world with 3x the posts per subreddit: scrape, build-data, SFT, reward model as in base
#   big-data3  both
# Learning rates: base keeps the demo's; SCALED_RM_LR=3e-4 sets the reward-model rate of the other four and
# BIG_SFT_LR=1e-3 the SFT rate of the 6 x 512 policy (the demo's 3e-3 is tuned for 2 x 256).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
ROOT=${1:-runs/scaling}
mkdir -p "$ROOT/logs"
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-3} TOKENIZERS_PARALLELISM=false

COMMON=(run.root="$ROOT" run.wandb.enabled=false)
BIG=(policy.n_layer=6 policy.n_embd=512 policy.n_head=8)
DATA3=(world.posts_per_subreddit=1350)
RM_LR=(); [ -n "${SCALED_RM_LR:-}" ] && RM_LR=(reward.learning_rate="$SCALED_RM_LR")
[ -n "${BIG_SFT_LR:-}" ] && BIG+=(sft.learning_rate="$BIG_SFT_LR")
if [ -n "${QUICK:-}" ]; then
  COMMON+=(world.posts_per_subreddit=60 sft.short_context_steps=4 sft.max_steps=4 reward.max_steps=4
           sft.max_eval_rows=8 reward.max_eval_pairs=16 reward.n_reference=16)
  DATA3=(world.posts_per_subreddit=120)
fi

# stage NAME STAGE [overrides...]: one pipeline stage of one variant, its output in logs/NAME.STAGE.log
stage() {
  local name=$1 st=$2; shift 2
  local t0=$SECONDS
  if "$PY" -m pipelines "$st" --config configs/demo.yaml run.name="$name" "${COMMON[@]}" "$@" --force \
      >"$ROOT/logs/$name.$st.log" 2>&1; then
    echo "$name $st done in $((SECONDS - t0)) s"
  else
    echo "$name $st FAILED after $((SECONDS - t0)) s (see $ROOT/logs/$name.$st.log)"; return 1
  fi
}
# share NAME FROM STAGES...: NAME reuses FROM's finished stages
share() {
  local name=$1 from=$2; shift 2
  mkdir -p "$ROOT/$name"
  for st in "$@"; do ln -sfn "../$from/$st" "$ROOT/$name/$st"; done
}

echo "SCALED_RM_LR=${SCALED_RM_LR:-demo} BIG_SFT_LR=${BIG_SFT_LR:-demo}" >"$ROOT/logs/settings.txt"
t_all=$SECONDS
( stage base scrape && stage base build-data && stage base sft ) &
( stage data3 scrape "${DATA3[@]}" && stage data3 build-data "${DATA3[@]}" ) &
wait
share big base scrape build-data
share big-data3 data3 scrape build-data
share ep3 base scrape build-data sft
( stage base train-reward ) &
( stage ep3 train-reward reward.num_train_epochs=3 "${RM_LR[@]}" ) &
( stage big sft "${BIG[@]}" && stage big train-reward "${BIG[@]}" "${RM_LR[@]}" ) &
( stage data3 sft "${DATA3[@]}" && stage data3 train-reward "${DATA3[@]}" "${RM_LR[@]}" ) &
( stage big-data3 sft "${BIG[@]}" "${DATA3[@]}" && stage big-data3 train-reward "${BIG[@]}" "${DATA3[@]}" "${RM_LR[@]}" ) &
wait
echo "all chains done in $((SECONDS - t_all)) s"

"$PY" - "$ROOT" <<'EOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print(open(root / "logs" / "settings.txt").read().strip()) if (root / "logs" / "settings.txt").exists() else None
keys = [("pairs", "rm/n_pairs"), ("acc", "rm/accuracy"), ("ceiling", "rm/bayes_ceiling"),
        ("gap", "rm/gap_to_ceiling"), ("gap_lo", "rm/gap_to_ceiling_ci_low"), ("gap_hi", "rm/gap_to_ceiling_ci_high"),
        ("gold_acc", "rm/gold/accuracy"), ("probe", "rm/probe/fact_swap_accuracy"), ("train_s", "rm/train/train_runtime")]
print("variant    " + " ".join(f"{k:>8}" for k, _ in keys))
for name in ("base", "ep3", "big", "data3", "big-data3"):
    f = root / name / "train-reward" / "metrics.json"
    if not f.exists():
        print(f"{name:<10} (no metrics: failed)"); continue
    m = json.loads(f.read_text())
    print(f"{name:<10} " + " ".join(f"{m[k]:>8.3f}" if isinstance(m.get(k), (int, float)) else f"{'-':>8}" for _, k in keys))
EOF
