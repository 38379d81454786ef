"""Helpers shared by the TRL-based stages (SFT and reward model): metric forwarding and resuming."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from transformers import PreTrainedModel, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

LogFn = Callable[[dict[str, float], int], None]
# (model, role) -> the model where the run's device rule puts it (a stage's `Context.place`); the Trainer then
# keeps it there (`use_cpu` follows the model's device).
PlaceFn = Callable[[PreTrainedModel, str], PreTrainedModel]


def placed_on_cpu(model: PreTrainedModel, place: PlaceFn | None) -> bool | None:
    """`use_cpu` for a Trainer of a model `place` put somewhere; None (the Trainer's own choice) without `place`."""
    return None if place is None else next(model.parameters()).device.type == "cpu"

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


def common_training_args(cfg, out_dir: Path, report_to: list[str], has_eval: bool, use_cpu: bool | None = None) -> dict:
    """TrainingArguments fields the SFT and reward configs share, set from our stage config.

    Every GPU-leaning TRL default (bf16, gradient checkpointing) is set explicitly from `cfg`, which is
    an `SFTStageConfig` or a `RewardStageConfig` (both carry these fields). `use_cpu` None: the Trainer's choice.
    """
    return dict(
        **({} if use_cpu is None else {"use_cpu": use_cpu}),
        output_dir=str(out_dir / "checkpoints"),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay,
        bf16=cfg.bf16,
        # transformers 5 renamed it; setting the new name overrides TRL's default gradient_checkpointing=True
        activation_checkpointing=cfg.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy="steps" if has_eval and cfg.eval_steps > 0 else "no",
        eval_steps=cfg.eval_steps if cfg.eval_steps > 0 else None,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
    )
