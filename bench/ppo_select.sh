#!/usr/bin/env bash
# Choose PPO's learning rate and number of updates on VALIDATION prompts, never on the test prompts the demo
# report reads: bench/ppo_settings.py (PPO through the run's reward model) for every learning rate x seed,
# side by side, one process each, every policy evaluated after every EVAL_EVERY updates; then the table of
# gains over SFT, averaged over seeds (bench/ppo_settings.py --summarize).
#
#   bash bench/ppo_select.sh RUN OUT [LR ...]     (default LRs: 1e-4 5e-5 2.5e-5)
#   env: SEEDS ("0 1 2 3"), EVAL_EVERY (10), SAMPLES (samples per prompt, 8), DEVICE (auto|cpu|cuda),
#        JOBS (processes at once; default: all), CONFIG (configs/demo.yaml), EXTRA (more dotted overrides)
#
# Each job's log is OUT/logs/<job>.log; a finished job is printed again, an interrupted one resumes.
# Sixteen CPU cores, or one GPU shared by the jobs, run the default 12 jobs at once.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
RUN=${1:?usage: bench/ppo_select.sh RUN OUT [LR ...]}; OUT=${2:?usage: bench/ppo_select.sh RUN OUT [LR ...]}; shift 2
LRS=("$@"); [ ${#LRS[@]} -gt 0 ] || LRS=(1e-4 5e-5 2.5e-5)
SEEDS=${SEEDS:-0 1 2 3}
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT/logs"

jobs_list() {
  for lr in "${LRS[@]}"; do for seed in $SEEDS; do echo "lr${lr}_s${seed} $lr $seed"; done; done
}
run_job() {  # NAME LR SEED
  local t0=$SECONDS
  if "$PY" bench/ppo_settings.py --run "$RUN" --config "${CONFIG:-configs/demo.yaml}" --reward rm \
      --eval-every "${EVAL_EVERY:-10}" --device "${DEVICE:-auto}" --threads 1 --out "$OUT/$1" \
      eval_policy.split=validation eval_policy.samples_per_prompt="${SAMPLES:-8}" ppo.learning_rate="$2" \
      ${EXTRA:-} ppo.seed="$3" >"$OUT/logs/$1.log" 2>&1; then
    echo "$1 done in $((SECONDS - t0)) s"
  else
    echo "$1 FAILED after $((SECONDS - t0)) s: $(tail -n 2 "$OUT/logs/$1.log")"
  fi
}
export -f run_job; export PY RUN OUT CONFIG EVAL_EVERY DEVICE SAMPLES EXTRA
jobs_list | xargs -P "${JOBS:-0}" -L 1 bash -c 'run_job "$@"' _
"$PY" bench/ppo_settings.py --summarize "$OUT" | tee "$OUT/summary.md"
