"""Reward model training: Bradley-Terry on upvote preference pairs with TRL's `RewardTrainer`.

    python -m pipelines train-reward --config configs/demo.yaml       # the stage that calls this module
    accelerate launch -m pipelines train-reward --config ...          # same code, several processes

    from reward_model.train import RewardStageConfig, train_reward_model
    result = train_reward_model("runs/demo/sft/model", tokenizer, pairs, "runs/demo/reward/model",
                                RewardStageConfig(), report_to=[], reference=sft_rows["validation"])

Steps:
1. Build `AutoModelForSequenceClassification(num_labels=1)` over the source (SFT policy dir or a config).
2. Tokenize pairs ourselves (`reward_model.encoding`, the same code the scorer uses) into
   `chosen_ids` / `rejected_ids` (+ `margin`, + `length` for length-grouped batches).
3. Optional short-context warm-up (`reward.short_context.steps`): word swaps of the training posts' author
   TL;DRs under title-only prompts, saved to out_dir/short_context and skipped on a rerun once there.
4. Train with `RewardTrainer`: loss = -logsigmoid(r_c - r_r - margin) [+ c * mean((r_c + r_r)^2)]; by default
   each pair is one row whose prompt is computed once (`reward_model.shared_prompt`, the same scores).
5. Save weights + tokenizer, merge LoRA first if used.
6. Normalize (Stiennon et al.): bias so reference TL;DRs score mean 0, written to `reward_config.json`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from datasets import Dataset, DatasetDict
from pydantic import BaseModel, ConfigDict, Field
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from trl import RewardConfig, RewardTrainer

from data.prompts import without_post_body
from reward_model.encoding import encode_prompt_response
from reward_model.grounding import STRATEGY, GroundingNegativesConfig, GroundingReport, add_grounding_negatives
from reward_model.model import build_reward_model, check_reward_model
from reward_model.scoring import RewardFileConfig, RewardScorer
from reward_model.shared_prompt import SharedPromptCollator, SharedPromptRewardTrainer, packed_length, resolve_batching
from reward_model.trainer_utils import (
    ForwardLogs,
    LogFn,
    PlaceFn,
    common_training_args,
    placed_on_cpu,
    resume_checkpoint,
)

PAIR_COLUMNS = ("prompt", "chosen", "rejected")


class LoraSpec(BaseModel):
    """Low-rank adapters (peft) instead of full fine-tuning; the score head is always fully trained."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, le=1.0, description="Dropout on the LoRA path.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Module names to adapt; 'all-linear' adapts every linear layer but the head."
    )


class ShortContextWarmup(BaseModel):
    """Word-swap pairs on title-only prompts, trained before the full-length pairs.

    Why: the reward model does not learn to look a summary's words up in a 150-token post from Bradley-Terry
    pairs (it fits ~2/3 of its own full-length swap negatives). The SFT policy had the same trouble copying
    facts, and a title-only warm-up solved it (`policy.sft`); this is the same curriculum for the check:
    an author TL;DR beats itself with one title word swapped, with a few dozen tokens to attend to.
    """

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(0, ge=0, description="Optimizer steps of the warm-up; 0 = no warm-up.")
    negatives_per_tldr: float = Field(
        3.0, gt=0.0, le=8.0, description="Swap pairs made per training TL;DR (each a new spot and word)."
    )
    learning_rate: float | None = Field(None, gt=0, description="Peak rate of the warm-up; None = reward.learning_rate.")


class RewardStageConfig(BaseModel):
    """Reward model training (TRL RewardTrainer, Bradley-Terry)."""

    model_config = ConfigDict(extra="forbid")

    model_name_or_path: str | None = Field(
        None, description="Initialize from this HF model/dir; None = the SFT policy of this run (its tokenizer)."
    )
    init: Literal["policy", "scratch"] = Field(
        "policy",
        description="With model_name_or_path None: start from the SFT policy's weights (Stiennon et al.), or "
        "`scratch`: random weights in the policy's architecture, with its tokenizer (no sft stage needed). On real "
        "votes a tiny, briefly trained policy was a worse start than random weights (docs/real-votes.md).",
    )
    learning_rate: float = Field(3e-4, gt=0, description="Peak AdamW learning rate (tiny models want ~1e-4..1e-3).")
    num_train_epochs: float = Field(2.0, gt=0, description="Passes over the training pairs (if max_steps <= 0).")
    max_steps: int = Field(-1, description="Optimizer steps; > 0 overrides num_train_epochs.")
    per_device_train_batch_size: int = Field(16, ge=1, description="Pairs per device per micro-batch.")
    per_device_eval_batch_size: int = Field(32, ge=1, description="Pairs per device in evaluation.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(
        769, ge=8, description="Token cap of prompt+response+EOS: at least data.prompt.max_prompt_tokens + the longest "
        "response + 1 (512 + 256 + 1; the config refuses less, since a longer pair loses its prompt's head).",
    )
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Fraction of steps of linear warmup.")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warmup."
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    use_margin: bool = Field(
        False, description="Pass the pairs' `margin` column to the loss: -logsigmoid(r_c - r_r - margin)."
    )
    center_rewards_coefficient: float | None = Field(
        None, ge=0.0, description="Weight of mean((r_c + r_r)^2) keeping rewards near 0 (Eisenstein et al.: 0.01)."
    )
    batching: Literal["auto", "shared_prompt", "pairs"] = Field(
        "auto",
        description="shared_prompt: one row per pair, the common prompt computed once (reward_model.shared_prompt; "
        "decoder models with a `score` head, same scores); pairs: TRL's two rows per pair (any model, e.g. "
        "encoders); auto: shared_prompt whenever the model supports it.",
    )
    group_by_length: bool = Field(
        True, description="Length-grouped batches (transformers LengthGroupedSampler): far less padding."
    )
    pair_sets: list[Literal["pairs", "pairs_cross_post"]] = Field(
        ["pairs"], min_length=1,
        description="build-data pair datasets to train and evaluate on: `pairs` (responses under one post: "
        "same_post, time_adjacent) and/or `pairs_cross_post` (author TL;DRs of two posts, each under its own post).",
    )
    max_train_pairs: int | None = Field(None, ge=1, description="Use at most this many training pairs (seeded).")
    max_eval_pairs: int | None = Field(
        512, ge=1, description="Evaluate the training curves on at most this many validation pairs."
    )
    eval_steps: int = Field(100, ge=0, description="Evaluate every N optimizer steps; 0 = only at the end.")
    logging_steps: int = Field(10, ge=1, description="Log training metrics every N steps.")
    save_steps: int = Field(200, ge=1, description="Write a resumable checkpoint every N steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    resume: bool = Field(True, description="Resume from the newest checkpoint in the output's checkpoints/.")
    bf16: bool = Field(False, description="bfloat16 autocast (GPU); off on CPU, where it is slow and silent.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory (GPU, big models).")
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters instead of all weights; None = full.")
    n_reference: int = Field(
        1000, ge=1, description="Reference (prompt, author TL;DR) rows used to set the normalization bias."
    )
    scoring_batch_size: int = Field(32, ge=1, description="Batch size of the scorer (normalization, evaluation).")
    grounding_negatives: GroundingNegativesConfig = Field(
        default_factory=GroundingNegativesConfig,
        description="Synthetic training pairs: a response beats itself with one grounded word swapped "
        "(reward_model.grounding); teaches checking a summary against its post.",
    )
    short_context: ShortContextWarmup = Field(
        default_factory=ShortContextWarmup,
        description="Grounding negatives on title-only prompts before the vote pairs (reward_model.train, step 3).",
    )
    seed: int = Field(
        0, description="Seed of head init, shuffling and subsampling; unset in an experiment config = run.seed."
    )


@dataclass
class RewardResult:
    """What training produced: where, how long, the final curves' values and the normalization."""

    model_dir: Path
    global_step: int
    train_runtime_s: float
    n_train_pairs: int
    n_eval_pairs: int
    n_truncated: int
    batching: str  # "shared_prompt" or "pairs": how pairs reached the model (`auto` resolved)
    tokens_per_pair: float  # real tokens the model processed per pair and epoch
    metrics: dict[str, float] = field(default_factory=dict)
    normalization: RewardFileConfig | None = None
    grounding: GroundingReport | None = None


def tokenize_pairs(
    pairs: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    use_margin: bool,
    batching: Literal["shared_prompt", "pairs"] = "pairs",
) -> tuple[Dataset, int]:
    """Pairs -> `chosen_ids`, `rejected_ids`, `length` (+ `margin`): the trainer's input, and #truncated.

    `length` is what the pair costs in a batch (the length-grouped sampler sorts by it): one shared-prompt row,
    or, as two rows, twice the longer side."""
    missing = [c for c in PAIR_COLUMNS + (("margin",) if use_margin else ()) if c not in pairs.column_names]
    if missing:
        raise ValueError(
            f"pair dataset lacks column(s) {missing}; expected the pair schema of docs/architecture.md "
            f"(has {pairs.column_names})"
        )
    prompts = list(pairs["prompt"])
    # cross_post pairs: each side is scored under its own post's prompt (as reward_model.evaluate does)
    rejected_prompts = list(pairs["rejected_prompt"]) if "rejected_prompt" in pairs.column_names else prompts
    chosen, n_c = encode_prompt_response(tokenizer, prompts, list(pairs["chosen"]), max_length)
    rejected, n_r = encode_prompt_response(tokenizer, rejected_prompts, list(pairs["rejected"]), max_length)
    columns = {
        "chosen_ids": chosen,
        "rejected_ids": rejected,
        "length": [
            packed_length(c, r) if batching == "shared_prompt" else max(len(c), len(r))
            for c, r in zip(chosen, rejected)
        ],
    }
    if use_margin:
        columns["margin"] = [float(m) for m in pairs["margin"]]
    return Dataset.from_dict(columns), n_c + n_r


def has_two_prompts(pairs: Dataset) -> bool:
    """Whether some pair compares responses to two different prompts (cross_post pairs): such a pair has no
    common prompt to compute once, so it needs `batching: pairs`."""
    if "rejected_prompt" not in pairs.column_names:
        return False
    return any(a != b for a, b in zip(pairs["prompt"], pairs["rejected_prompt"]))


def _subsample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    return ds if n is None or len(ds) <= n else ds.shuffle(seed=seed).select(range(n))


def make_reward_config(cfg: RewardStageConfig, out_dir: Path, report_to: list[str], has_eval: bool,
                       use_cpu: bool | None = None) -> RewardConfig:
    """TRL's RewardConfig from ours; every CPU-hostile TRL default (bf16, checkpointing) set explicitly."""
    return RewardConfig(
        **common_training_args(cfg, out_dir, report_to, has_eval, use_cpu),
        max_grad_norm=cfg.max_grad_norm,
        center_rewards_coefficient=cfg.center_rewards_coefficient,
        max_length=None,  # we truncate while tokenizing; TRL would silently drop over-long pairs
        length_column_name="length",
        remove_unused_columns=False,  # keep `length` for the sampler; the collator ignores it
        disable_dropout=True,
    )


def make_reward_trainer(
    batching: str, model, args: RewardConfig, tokenizer: PreTrainedTokenizerBase, **kwargs
) -> RewardTrainer:
    """TRL's RewardTrainer on two rows per pair, or (batching="shared_prompt") its subclass with the
    shared-prompt collator; `kwargs` go to the trainer (datasets, peft_config, callbacks)."""
    if batching == "shared_prompt":
        return SharedPromptRewardTrainer(model=model, args=args, processing_class=tokenizer,
                                         data_collator=SharedPromptCollator(tokenizer.pad_token_id), **kwargs)
    return RewardTrainer(model=model, args=args, processing_class=tokenizer, **kwargs)


def short_context_pairs(tldrs: Dataset, cfg: RewardStageConfig) -> tuple[Dataset, GroundingReport]:
    """Step 3's pairs: on a title-only prompt, the author TL;DR beats itself with one title word swapped
    (`reward_model.grounding.corrupt`: only words of the title count as grounded)."""
    missing = [c for c in ("prompt", "completion") if c not in tldrs.column_names]
    if missing:
        raise ValueError(f"reward.short_context needs TL;DR rows with columns {missing}; have {tldrs.column_names}")
    texts = list(tldrs["completion"])
    base = Dataset.from_dict({
        "prompt": [without_post_body(p) for p in tldrs["prompt"]], "chosen": texts, "rejected": texts,
        "strategy": ["tldr"] * len(texts), "margin": [0.0] * len(texts),
    })
    swaps = cfg.grounding_negatives.model_copy(update={
        "enabled": True, "fraction": cfg.short_context.negatives_per_tldr, "insert_fraction": 0.0,
        "source": "comments", "margin": 0.0,
    })
    made, report = add_grounding_negatives(base, swaps, vocabulary_prompts=list(tldrs["prompt"]))
    return made.filter(lambda s: s == STRATEGY, input_columns="strategy"), report


def _short_context_warmup(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tldrs: Dataset | None, out_dir: Path,
    cfg: RewardStageConfig, batching: str, report_to: list[str], log: LogFn | None, place: PlaceFn | None = None,
) -> tuple[PreTrainedModel, dict[str, float]]:
    """Step 3; a finished warm-up in out_dir/short_context is loaded, not redone."""
    phase_dir = out_dir / "short_context"
    done = phase_dir / "WARMUP_DONE"
    if done.exists():
        print(f"[reward] short-context warm-up already done: loading {phase_dir}")
        return build_reward_model(phase_dir, tokenizer, seed=cfg.seed), {}
    if tldrs is None or not len(tldrs):
        raise ValueError("reward.short_context.steps > 0 needs the training posts' author TL;DRs "
                         "(build-data/sft train split); none were given")
    pairs, report = short_context_pairs(tldrs, cfg)
    train_ds, _ = tokenize_pairs(pairs, tokenizer, cfg.max_length, cfg.use_margin, batching)
    phase_cfg = cfg.model_copy(update={
        "max_steps": cfg.short_context.steps, "eval_steps": 0,
        "learning_rate": cfg.short_context.learning_rate or cfg.learning_rate,
    })
    if place is not None:
        model = place(model, "reward model (short-context warm-up)")
    args = make_reward_config(phase_cfg, phase_dir, report_to, has_eval=False, use_cpu=placed_on_cpu(model, place))
    trainer = make_reward_trainer(batching, model, args, tokenizer, train_dataset=train_ds,
                                  callbacks=[ForwardLogs(log, "rm_short")] if log else None)
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(phase_dir / "checkpoints", cfg.resume))
    metrics = {f"rm_short/train/{k}": float(v) for k, v in output.metrics.items() if isinstance(v, (int, float))}
    metrics.update({"rm_short/pairs": len(train_ds), "rm_short/context_matched": report.context_matched})
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(phase_dir)
        done.write_text(f"{trainer.state.global_step} steps\n")
    trainer.accelerator.wait_for_everyone()
    return trainer.model, metrics


def train_reward_model(
    model_or_source: str | Path | PretrainedConfig | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: DatasetDict,
    out_dir: str | Path,
    cfg: RewardStageConfig,
    report_to: list[str] | None = None,
    reference: Dataset | None = None,
    log: LogFn | None = None,
    tldrs: Dataset | None = None,
    place: PlaceFn | None = None,
) -> RewardResult:
    """Train a reward model on `pairs["train"]` (curves on `pairs["validation"]`), save it to `out_dir`.

    `reference` holds SFT rows (`prompt`, `completion`): their completions set the normalization bias.
    Without it the bias is fit on the chosen responses of the validation pairs (a weaker stand-in).
    `tldrs` (training SFT rows) are what grounding negatives are made from when
    `cfg.grounding_negatives.source` asks for author TL;DRs. `place(model, role)` puts each model trained where
    the run's device rule says (None: the Trainer's choice).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if "train" not in pairs:
        raise ValueError(f"pairs must have a 'train' split; has {list(pairs.keys())}")
    if len(pairs["train"]) == 0:
        raise ValueError("build-data kept 0 training pairs: no reward model can be trained (its data_card.md lists the "
                         "drops by rule; for posts without comments set data.pairs.cross_post.enabled=true)")

    # 1. Model with a one-logit head and the tokenizer's (distinct) pad id.
    if isinstance(model_or_source, PreTrainedModel):
        model = model_or_source
    else:
        model = build_reward_model(model_or_source, tokenizer, seed=cfg.seed)
    check_reward_model(model, tokenizer)
    base_name = str(model_or_source) if isinstance(model_or_source, (str, Path)) else type(model).__name__

    batching = resolve_batching(cfg.batching, model)
    if batching == "shared_prompt" and any(has_two_prompts(ds) for ds in pairs.values()):
        if cfg.batching == "shared_prompt":
            raise ValueError("reward.batching=shared_prompt, but some pairs compare two different prompts "
                             "(cross_post pairs, `rejected_prompt`): set reward.batching to auto or pairs")
        batching = "pairs"

    # 2. Tokenize with the scorer's code (EOS appended, prompt start cut when too long).
    train_pairs = _subsample(pairs["train"], cfg.max_train_pairs, cfg.seed)
    train_pairs, grounding = add_grounding_negatives(train_pairs, cfg.grounding_negatives, tldrs)
    train_ds, n_cut = tokenize_pairs(train_pairs, tokenizer, cfg.max_length, cfg.use_margin, batching)
    eval_ds = None
    if "validation" in pairs and len(pairs["validation"]):
        val_pairs = _subsample(pairs["validation"], cfg.max_eval_pairs, cfg.seed)
        eval_ds, _ = tokenize_pairs(val_pairs, tokenizer, cfg.max_length, cfg.use_margin, batching)

    peft_config = None
    if cfg.lora is not None:
        from peft import LoraConfig, TaskType

        peft_config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules,
            modules_to_save=["score"],  # the new head must train fully
        )

    # 3. Optional short-context warm-up (title-only swap pairs).
    warm_metrics: dict[str, float] = {}
    if cfg.short_context.steps > 0:
        model, warm_metrics = _short_context_warmup(model, tokenizer, tldrs, out_dir, cfg, batching,
                                                    report_to or [], log, place)

    # 4. Train (resumes from out_dir/checkpoints when asked and present).
    if place is not None:
        model = place(model, "reward model (trained)")
    args = make_reward_config(cfg, out_dir, report_to or [], eval_ds is not None, placed_on_cpu(model, place))
    trainer = make_reward_trainer(
        batching,
        model,
        args,
        tokenizer,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        peft_config=peft_config,
        callbacks=[ForwardLogs(log, "rm")] if log else None,
    )
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(out_dir / "checkpoints", cfg.resume))
    runtime = time.perf_counter() - start
    metrics = {f"rm/train/{k}": float(v) for k, v in output.metrics.items() if isinstance(v, (int, float))}
    metrics.update(warm_metrics)
    if eval_ds is not None:
        final_eval = trainer.evaluate()
        metrics.update({f"rm/eval/{k[5:]}": float(v) for k, v in final_eval.items() if k.startswith("eval_")})

    # 5. Save (LoRA merged into the base so every reader loads a plain model).
    model = trainer.model
    if cfg.lora is not None:
        model = model.merge_and_unload()
    normalization = None
    if trainer.is_world_process_zero():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)

        # 6. Normalize: reference TL;DRs score mean 0 (Stiennon et al. 2020).
        scorer = RewardScorer(
            model.eval(),
            tokenizer,
            RewardFileConfig(max_length=cfg.max_length, base_model=base_name),
            batch_size=cfg.scoring_batch_size,
        )
        if reference is not None and len(reference):
            ref = _subsample(reference, cfg.n_reference, cfg.seed)
            normalization = scorer.fit_bias(list(ref["prompt"]), list(ref["completion"]), progress=True)
        else:
            ref = _subsample(pairs.get("validation", train_pairs), cfg.n_reference, cfg.seed)
            normalization = scorer.fit_bias(list(ref["prompt"]), list(ref["chosen"]), progress=True)
        normalization.save(out_dir)
        metrics["rm/normalization/bias"] = normalization.bias
        metrics["rm/normalization/raw_reference_std"] = normalization.raw_reference_std or 0.0
    trainer.accelerator.wait_for_everyone()
    return RewardResult(
        model_dir=out_dir,
        global_step=trainer.state.global_step,
        train_runtime_s=runtime,
        n_train_pairs=len(train_ds),
        n_eval_pairs=len(eval_ds) if eval_ds is not None else 0,
        n_truncated=n_cut,
        batching=batching,
        tokens_per_pair=(
            sum(train_ds["length"]) if batching == "shared_prompt" else sum(map(len, list(train_ds["chosen_ids"]) + list(train_ds["rejected_ids"])))
        ) / max(1, len(train_ds)),
        metrics=metrics,
        normalization=normalization,
        grounding=grounding,
    )
