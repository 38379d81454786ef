"""Helpers shared by the TRL-based stages (SFT and reward model): metric forwarding and resuming."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

LogFn = Callable[[dict[str, float], int], None]

# Trainer log keys that are bookkeeping, not curves.
_SKIP = {"total_flos", "epoch"}


class ForwardLogs(TrainerCallback):
    """Sends each Trainer log dict to a plain `log(metrics, step)` callback, keys namespaced `prefix/...`.

    `loss` -> `rm/train/loss`, `eval_accuracy` -> `rm/eval/accuracy`: algorithms never call wandb themselves.
    """

    def __init__(self, log: LogFn, prefix: str):
        self.log, self.prefix = log, prefix

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        out: dict[str, float] = {}
        for key, value in logs.items():
            if key in _SKIP or not isinstance(value, (int, float)):
                continue
            split, name = ("eval", key[5:]) if key.startswith("eval_") else ("train", key)
            out[f"{self.prefix}/{split}/{name}"] = float(value)
        if out:
            self.log(out, state.global_step)


def resume_checkpoint(checkpoint_dir: str | Path, resume: bool) -> str | None:
    """The newest `checkpoint-N` under `checkpoint_dir` when resuming is on, else None (fresh start)."""
    path = Path(checkpoint_dir)
    if not resume or not path.is_dir():
        return None
    return get_last_checkpoint(str(path))
