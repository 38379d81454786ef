"""Supervised fine-tuning: post -> author TL;DR with TRL's `SFTTrainer`, loss on the completion only.

    python -m pipelines sft --config configs/demo.yaml               # the stage that calls this module
    from policy.sft import SFTStageConfig, train_sft
    result = train_sft("runs/demo/base", tokenizer, sft_rows, "runs/demo/sft/model", SFTStageConfig(), [])
    result.samples  # greedy TL;DRs of a few validation prompts, for a W&B table

What TRL 1.16 does with a prompt/completion dataset (checked in its source): it appends EOS to the
completion, tokenizes prompt and prompt+completion, and masks the prompt tokens out of the loss
(`completion_only_loss` defaults on for this format). Its defaults are GPU ones (bf16 autocast, gradient
checkpointing, lr 2e-5): every one is set from our config. Sequences longer than `max_length` would be cut
at the end (`keep_start`), losing the TL;DR and its EOS, so such rows are dropped here and counted.

Steps:
1. Drop rows whose prompt + completion + EOS exceed `max_length` (counted).
2. Optional short-context warm-up (`short_context_steps`): the same rows with the POST section removed
   (title -> TL;DR), saved to out_dir/short_context and skipped on a rerun once there.
   Why: a from-scratch 2-layer policy trained on full ~150-token prompts alone learns the TL;DR template
   but copies no fact from the post in a 5-minute CPU budget; with a few dozen tokens to attend to it
   learns to copy within a few hundred cheap steps, and keeps doing so on full prompts.
3. Train with `SFTTrainer` (eval loss every `eval_steps`, checkpoints under out_dir/checkpoints, resumable);
   on a CPU its loss projects only the completion positions through the LM head (`policy.sft_loss`).
4. Save model + tokenizer to `out_dir` (save_pretrained).
5. Greedy samples on the first `n_samples` validation prompts.

`pretrain_lm` is the step before SFT for a from-scratch policy (the `pretrain` stage): plain language
modelling on each row's whole text (prompt + TL;DR, loss on every token), with the SFT optimizer settings.
Why: Stiennon et al. fine-tune a pretrained LM, which has read text of every kind; a from-scratch policy
trained on the completion only has never been asked to predict a title, a question or a number, and its
next-token ranking there is flat. Input-only steering (`policy.goals`) measures exactly that ranking. A hub
checkpoint needs no such step (`pretrain.steps: 0`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from datasets import Dataset, DatasetDict
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig

from data.prompts import without_post_body
from policy.models import load_causal_lm
from policy.sft_loss import CompletionOnlySFTTrainer
from reward_model.trainer_utils import (
    ForwardLogs,
    LogFn,
    PlaceFn,
    common_training_args,
    placed_on_cpu,
    resume_checkpoint,
)

SFT_COLUMNS = ("prompt", "completion")


class SFTStageConfig(BaseModel):
    """Supervised fine-tuning on (prompt, author TL;DR) rows."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(
        1e-3, gt=0, description="Peak AdamW learning rate (tiny from-scratch GPT-2: ~1e-3; pretrained 1B: ~1e-5)."
    )
    num_train_epochs: float = Field(3.0, gt=0, description="Passes over the SFT rows (if max_steps <= 0).")
    max_steps: int = Field(-1, description="Optimizer steps; > 0 overrides num_train_epochs.")
    per_device_train_batch_size: int = Field(16, ge=1, description="Rows per device per micro-batch.")
    per_device_eval_batch_size: int = Field(32, ge=1, description="Rows per device in evaluation.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(
        641, ge=8, description="Token cap of prompt + completion + EOS; longer rows are dropped (counted). At least "
        "data.prompt.max_prompt_tokens + data.sft.max_completion_tokens + 1 (512 + 128 + 1; checked).",
    )
    short_context_steps: int = Field(
        0,
        ge=0,
        description="Optimizer steps of a warm-up phase on title-only prompts (POST section removed) before "
        "the full prompts; 0 = off. For a from-scratch tiny policy: it learns to copy facts where there are "
        "few tokens to attend to (see docs/architecture.md); a pretrained model needs no warm-up.",
    )
    max_new_tokens: int = Field(48, ge=1, description="Tokens generated per logged sample.")
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Fraction of steps of linear warmup.")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    group_by_length: bool = Field(True, description="Length-grouped batches: less padding, faster on CPU.")
    max_train_rows: int | None = Field(None, ge=1, description="Use at most this many training rows (seeded).")
    max_eval_rows: int | None = Field(256, ge=1, description="Eval loss on at most this many validation rows.")
    eval_steps: int = Field(100, ge=0, description="Evaluate every N optimizer steps; 0 = only at the end.")
    logging_steps: int = Field(10, ge=1, description="Log training metrics every N steps.")
    save_steps: int = Field(200, ge=1, description="Write a resumable checkpoint every N steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    n_samples: int = Field(6, ge=0, description="Greedy samples on validation prompts returned for logging.")
    bf16: bool = Field(False, description="bfloat16 autocast (GPU); off on CPU, where it is slow and silent.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory (GPU, big models).")
    resume: bool = Field(True, description="Resume from the newest checkpoint in the output's checkpoints/.")
    seed: int = Field(0, description="Seed of shuffling and subsampling; unset in an experiment config = run.seed.")


class PretrainConfig(BaseModel):
    """Language modelling on whole texts before SFT (the `pretrain` stage), with the `sft` optimizer settings."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(
        0,
        ge=0,
        description="Optimizer steps of plain language modelling on each SFT row's whole text (prompt + TL;DR, loss "
        "on every token); 0 = off (a hub checkpoint). For a from-scratch tiny policy: the stand-in for starting from "
        "a pretrained LM, which has learned the posts' language and not just the TL;DR slot (see policy/sft.py).",
    )
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate of this phase; None = sft.learning_rate (batch size, schedule, "
        "max_length and seed are always the sft section's).",
    )


@dataclass
class PretrainResult:
    """Where the pretrained policy went (model + tokenizer), its steps, seconds and `pretrain/...` metrics."""

    model_dir: Path
    steps: int
    runtime_s: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SFTResult:
    """Where the model went, the final losses, and greedy samples (prompt, reference, generated)."""

    model_dir: Path
    global_step: int
    train_runtime_s: float
    n_train_rows: int
    n_dropped_too_long: int
    metrics: dict[str, float] = field(default_factory=dict)
    samples: list[dict[str, str]] = field(default_factory=list)


def _fits(ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int) -> tuple[Dataset, int]:
    """Rows whose prompt + completion + EOS fit `max_length` (TRL would cut the TL;DR off otherwise)."""
    texts = [p + c for p, c in zip(ds["prompt"], ds["completion"])]
    extra = 1 if tokenizer.eos_token_id is not None else 0
    lengths = [len(ids) + extra for ids in tokenizer(texts)["input_ids"]]
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    return ds.select(keep), len(ds) - len(keep)


def _subsample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    return ds if n is None or len(ds) <= n else ds.shuffle(seed=seed).select(range(n))


@torch.no_grad()
def greedy_samples(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset, max_new_tokens: int
) -> list[dict[str, str]]:
    """Greedy completions of each row's prompt (one at a time: no padding, so no position-id pitfalls)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for row in rows:
        enc = tokenizer(row["prompt"], return_tensors="pt").to(device)
        gen = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )  # [1, prompt_len + new]
        text = tokenizer.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out.append({"prompt": row["prompt"], "reference": row["completion"], "generated": text})
    model.train(was_training)
    return out


def make_sft_config(
    cfg: SFTStageConfig, out_dir: Path, report_to: list[str], has_eval: bool, completion_only: bool = True,
    use_cpu: bool | None = None,
) -> SFTConfig:
    """TRL's SFTConfig from ours; every GPU-leaning TRL default set explicitly."""
    return SFTConfig(
        **common_training_args(cfg, out_dir, report_to, has_eval, use_cpu),
        max_length=cfg.max_length,
        completion_only_loss=completion_only,
        packing=False,
    )


def _train_phase(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    eval_ds: Dataset | None,
    out_dir: Path,
    cfg: SFTStageConfig,
    report_to: list[str] | None,
    log: LogFn | None,
    prefix: str,
    place: PlaceFn | None = None,
) -> tuple[CompletionOnlySFTTrainer, dict[str, float], float]:
    """One SFTTrainer run (resumable from out_dir/checkpoints): the trainer, `prefix/...` metrics, seconds.

    A `text` dataset (language modelling) is trained on every token; a prompt/completion one on the completion.
    """
    has_eval = eval_ds is not None and len(eval_ds) > 0
    completion_only = "text" not in train.column_names
    if place is not None:
        model = place(model, f"policy ({prefix})")
    trainer = CompletionOnlySFTTrainer(
        model=model,
        args=make_sft_config(cfg, out_dir, report_to or [], has_eval, completion_only, placed_on_cpu(model, place)),
        train_dataset=train,
        eval_dataset=eval_ds if has_eval else None,
        processing_class=tokenizer,
        callbacks=[ForwardLogs(log, prefix)] if log else None,
    )
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(out_dir / "checkpoints", cfg.resume))
    runtime = time.perf_counter() - start
    metrics = {f"{prefix}/train/{k}": float(v) for k, v in output.metrics.items() if isinstance(v, (int, float))}
    if has_eval:
        final_eval = trainer.evaluate()
        metrics.update({f"{prefix}/eval/{k[5:]}": float(v) for k, v in final_eval.items() if k.startswith("eval_")})
    return trainer, metrics, runtime


def short_context_rows(rows: Dataset) -> Dataset:
    """The same (prompt, completion) rows with each prompt's POST section removed (title -> TL;DR)."""
    return rows.map(lambda r: {"prompt": without_post_body(r["prompt"])}, desc="title-only prompts")


def whole_text_rows(rows: Dataset) -> Dataset:
    """Each (prompt, completion) row as one `text` (language modelling: the loss covers every token)."""
    return rows.map(lambda r: {"text": r["prompt"] + r["completion"]}, remove_columns=rows.column_names,
                    desc="whole texts")


def _cached_phase(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    eval_ds: Dataset | None,
    phase_dir: Path,
    steps: int,
    cfg: SFTStageConfig,
    report_to: list[str] | None,
    log: LogFn | None,
    prefix: str,
    place: PlaceFn | None = None,
) -> tuple[PreTrainedModel, dict[str, float], float]:
    """An early phase (pretraining, warm-up) run once: a finished one in `phase_dir` is loaded, not redone."""
    done = phase_dir / "WARMUP_DONE"
    if done.exists():
        ran = done.read_text().split()[0]
        if ran != str(steps):
            raise ValueError(f"{phase_dir} holds a finished {prefix} phase of {ran} steps, but {steps} are asked for: "
                             f"delete {phase_dir} to train it again, or ask for {ran}")
        print(f"[{prefix}] phase already done: loading {phase_dir}")
        return load_causal_lm(phase_dir), {}, 0.0
    phase_cfg = cfg.model_copy(update={"max_steps": steps})
    trainer, metrics, runtime = _train_phase(
        model, tokenizer, train, eval_ds, phase_dir, phase_cfg, report_to, log, prefix=prefix, place=place
    )
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(phase_dir)
        done.write_text(f"{trainer.state.global_step} steps\n")
    trainer.accelerator.wait_for_everyone()
    return trainer.model, metrics, runtime


@dataclass
class SFTRows:
    """The rows every phase trains on: training rows that fit `max_length`, the eval rows, the validation split."""

    train: Dataset
    eval: Dataset | None  # up to max_eval_rows validation rows that fit; None without validation rows
    validation: Dataset | None
    n_dropped: int  # training rows dropped as too long


def prepare_rows(sft_dataset_dict: DatasetDict, tokenizer: PreTrainedTokenizerBase, cfg: SFTStageConfig) -> SFTRows:
    """Check the SFT-row schema and the tokenizer, then keep only rows whose TL;DR (and EOS) fit."""
    if "train" not in sft_dataset_dict:
        raise ValueError(f"SFT rows need a 'train' split; have {list(sft_dataset_dict.keys())}")
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError(
            "SFT tokenizer needs a pad token distinct from eos (else EOS is masked out and never learned): "
            "use policy.models.load_tokenizer"
        )
    for name, split in sft_dataset_dict.items():
        missing = [c for c in SFT_COLUMNS if c not in split.column_names]
        if missing:
            raise ValueError(f"SFT split {name!r} lacks column(s) {missing}; expected the SFT-row schema")
    if len(sft_dataset_dict["train"]) == 0:
        raise ValueError("build-data kept 0 SFT training rows: nothing to fine-tune on (its data_card.md lists the "
                         "sft/ and posts/ drops; real posts need an author TL;DR in their text)")
    keep_cols = list(SFT_COLUMNS)
    train = _subsample(sft_dataset_dict["train"], cfg.max_train_rows, cfg.seed).select_columns(keep_cols)
    train, n_dropped = _fits(train, tokenizer, cfg.max_length)
    if len(train) == 0:
        raise ValueError(f"no SFT row fits sft.max_length={cfg.max_length} tokens")
    validation = sft_dataset_dict.get("validation")
    eval_ds = None
    if validation is not None and len(validation):
        eval_ds, _ = _fits(_subsample(validation, cfg.max_eval_rows, cfg.seed).select_columns(keep_cols),
                           tokenizer, cfg.max_length)
    return SFTRows(train, eval_ds if eval_ds is not None and len(eval_ds) else None, validation, n_dropped)


def _as_model(model_or_path: str | Path | PreTrainedModel) -> PreTrainedModel:
    return model_or_path if isinstance(model_or_path, PreTrainedModel) else load_causal_lm(model_or_path)


def pretrain_lm(
    model_or_path: str | Path | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sft_dataset_dict: DatasetDict,
    out_dir: str | Path,
    cfg: SFTStageConfig,
    pretrain: PretrainConfig,
    report_to: list[str] | None = None,
    log: LogFn | None = None,
    place: PlaceFn | None = None,
) -> PretrainResult:
    """Language modelling on each SFT row's whole text for `pretrain.steps` steps (see module docstring); the
    model and tokenizer go to `out_dir`. A finished run there is loaded, not redone; an interrupted one resumes.
    `place(model, role)` puts each model trained where the run's device rule says (None: the Trainer's choice)."""
    if pretrain.steps <= 0:
        raise ValueError("pretrain.steps is 0: there is nothing to pretrain (start SFT from the policy itself)")
    out_dir = Path(out_dir)
    rows = prepare_rows(sft_dataset_dict, tokenizer, cfg)
    phase_cfg = cfg.model_copy(update={"learning_rate": pretrain.learning_rate or cfg.learning_rate})
    model, metrics, runtime = _cached_phase(
        _as_model(model_or_path), tokenizer, whole_text_rows(rows.train),
        whole_text_rows(rows.eval) if rows.eval is not None else None, out_dir, pretrain.steps, phase_cfg,
        report_to, log, prefix="pretrain", place=place,
    )
    tokenizer.save_pretrained(out_dir)
    return PretrainResult(out_dir, pretrain.steps, runtime, metrics)


def train_sft(
    model_or_path: str | Path | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sft_dataset_dict: DatasetDict,
    out_dir: str | Path,
    cfg: SFTStageConfig,
    report_to: list[str] | None = None,
    log: LogFn | None = None,
    place: PlaceFn | None = None,
) -> SFTResult:
    """Fine-tune a causal LM on `sft_dataset_dict["train"]` (SFT-row schema), save it to `out_dir`.

    `place(model, role)` puts each model trained where the run's device rule says (None: the Trainer's choice).

    With "wandb" in `report_to` the Trainer's curves go to the already-open wandb run. A from-scratch policy
    should come from `pretrain_lm` first (the `pretrain` stage).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # 1. Keep only rows whose TL;DR (and EOS) fit.
    rows = prepare_rows(sft_dataset_dict, tokenizer, cfg)
    model = _as_model(model_or_path)
    metrics: dict[str, float] = {}
    runtime = 0.0

    # 2. Optional short-context warm-up (title -> TL;DR), once.
    if cfg.short_context_steps > 0:
        model, metrics, runtime = _cached_phase(
            model, tokenizer, short_context_rows(rows.train),
            short_context_rows(rows.eval) if rows.eval is not None else None, out_dir / "short_context",
            cfg.short_context_steps, cfg, report_to, log, prefix="sft_short", place=place,
        )

    # 3. Train on the full prompts.
    trainer, phase_metrics, phase_runtime = _train_phase(
        model, tokenizer, rows.train, rows.eval, out_dir, cfg, report_to, log, prefix="sft", place=place
    )
    metrics.update(phase_metrics)
    runtime += phase_runtime

    # 4. Save; 5. samples.
    samples: list[dict[str, str]] = []
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        source = rows.validation if rows.validation is not None and len(rows.validation) else rows.train
        if cfg.n_samples:
            samples = greedy_samples(
                trainer.model, tokenizer, source.select(range(min(cfg.n_samples, len(source)))), cfg.max_new_tokens
            )
    trainer.accelerator.wait_for_everyone()
    return SFTResult(
        model_dir=out_dir,
        global_step=trainer.state.global_step,
        train_runtime_s=runtime,
        n_train_rows=len(rows.train),
        n_dropped_too_long=rows.n_dropped,
        metrics=metrics,
        samples=samples,
    )
