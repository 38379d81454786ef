"""SFT step time on a CPU: TRL's SFTTrainer vs ours (`policy.sft_loss.CompletionOnlySFTTrainer`), side by side.

    python bench/sft_loss.py            # the demo's policy shape (2 x 256), simulated Reddit, 60 steps per run
    python bench/sft_loss.py --quick    # 2 x 128, 12 steps
    python bench/sft_loss.py --rows runs/demo/build-data/sft --tokenizer runs/demo/sft/model

TRL 1.16 projects every position through the LM head off Triton devices (prompt and padding included);
ours projects only the completion positions. Both start from the same initialization, see the same
batches (the demo's SFT settings: batch 16, length-grouped, lr 3e-3) and optimize the same loss. Two
prompt formats: the full Stiennon prompt and the title-only prompt of the demo's warm-up. Printed: seconds
per step of each trainer, our speed-up, and each run's mean training loss. On one batch the two losses and
gradients agree to float precision (tests/test_sft.py); over many steps from scratch at this rate the
rounding differences grow, so the mean losses differ in the second or third decimal.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from datasets import Dataset, load_from_disk
from transformers import AutoTokenizer, TrainerCallback, logging as hf_logging
from trl import SFTTrainer

from policy.models import ModelSpec, build_tiny_causal_lm, load_causal_lm
from policy.sft import SFTStageConfig, make_sft_config, short_context_rows
from policy.sft_loss import CompletionOnlySFTTrainer

TRAINERS = {"TRL SFTTrainer": SFTTrainer, "ours": CompletionOnlySFTTrainer}


def run(trainer_cls, base: Path, tok, rows: Dataset, steps: int, out: Path) -> dict:
    """`steps` optimizer steps from the policy saved in `base`; seconds per step (after one untimed step)."""
    torch.manual_seed(0)
    model = load_causal_lm(base)
    cfg = SFTStageConfig(max_steps=steps + 1, learning_rate=3e-3, eval_steps=0, save_steps=10**6,
                         logging_steps=10**6, lr_scheduler_type="constant", warmup_ratio=0.0)
    args = make_sft_config(cfg, out, [], has_eval=False)
    args.save_strategy = "no"
    trainer = trainer_cls(model=model, args=args, train_dataset=rows, processing_class=tok)
    timer = _StepTimer()
    trainer.add_callback(timer)
    output = trainer.train()
    return {"s_per_step": timer.seconds / steps, "loss": output.training_loss}


class _StepTimer(TrainerCallback):
    """Wall time of every step but the first (which pays one-time costs)."""

    def __init__(self) -> None:
        self.seconds, self._t = 0.0, None

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if state.global_step > 1:
            self.seconds += time.perf_counter() - self._t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 2 x 128 policy and 12 steps")
    ap.add_argument("--rows", type=Path, help="a saved SFT DatasetDict (uses its train split)")
    ap.add_argument("--tokenizer", type=Path, help="tokenizer directory for --rows")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    hf_logging.set_verbosity_error()
    steps = a.steps or (12 if a.quick else 60)
    spec = ModelSpec(n_layer=2, n_embd=128, n_head=2) if a.quick else ModelSpec(n_layer=2, n_embd=256, n_head=4)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.rows:
            if not a.tokenizer:
                ap.error("--rows needs --tokenizer")
            rows, tok = load_from_disk(str(a.rows))["train"], AutoTokenizer.from_pretrained(str(a.tokenizer))
        else:
            from reward import simulated_datasets  # bench/reward.py: the same simulated data path

            built, tok = simulated_datasets(40 if a.quick else 120, tmp)
            rows = built.sft["train"]
        build_tiny_causal_lm(tok, spec).save_pretrained(tmp / "base")
        formats = {"full prompt": rows, "title only": short_context_rows(rows)}
        res = {(f, name): run(cls, tmp / "base", tok, data, steps, tmp / "out")
               for f, data in formats.items() for name, cls in TRAINERS.items()}

    print(f"\nSFT steps on a CPU, {len(rows)} rows, batch 16, policy {spec.n_layer}x{spec.n_embd}, {steps} steps, "
          f"{a.threads} thread(s)")
    print(f"{'prompt':14s}{'TRL s/step':>12s}{'ours s/step':>13s}{'speed-up':>10s}{'TRL loss':>10s}{'our loss':>10s}")
    for f in formats:
        trl_run, ours = res[(f, "TRL SFTTrainer")], res[(f, "ours")]
        print(f"{f:14s}{trl_run['s_per_step']:12.3f}{ours['s_per_step']:13.3f}"
              f"{trl_run['s_per_step'] / ours['s_per_step']:9.2f}x{trl_run['loss']:10.4f}{ours['loss']:10.4f}")


if __name__ == "__main__":
    main()
