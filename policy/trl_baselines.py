"""Critic-free baselines from TRL 1.16 (`RLOOTrainer`, `GRPOTrainer`) against the same reward as our PPO.

Selected by `algo: rloo | grpo`. TRL tokenizes a reward *model* its own way (right padding, no special
tokens, not the way it was trained), so the reward always goes in as a Python callable wrapping our `RewardFn`
(texts in, so the reward model keeps its own tokenizer and formatting).

What makes the comparison with PPO fair (each checked by tests/test_ppo_trl_baselines.py):
- The same budget and sampling: episodes, KL coefficient, temperature, prompt and response lengths, seed and
  bf16 are PPO's (`ppo:` section) unless a baseline sets its own (`inherit_from_ppo`, applied when the config
  is loaded, so the run's config.yaml shows the values used). An episode is one sampled response in both:
  optimizer steps = episodes // completions per step.
- The log-probs TRL trains on are those its sampler used. TRL 1.16 scores completions with `input_ids` and
  `attention_mask` only; GPT-2 (absolute positions) then reads a left-padded prompt at arange positions that
  `generate` (positions from the mask) did not use: 1.56 nats apart on a padded row. A forward pre-hook on
  the policy and TRL's reference model derives `position_ids` from the mask when none are given
  (`policy.sampling.use_mask_positions`).
- Dropout off in the policy and reference (`policy.models.disable_dropout`: modules and config floats).
Left as they are: the KL estimator (RLOO subtracts beta * the summed k1 log-ratio from the reward, as our PPO
does per token; GRPO adds beta * per-token k3 to the loss) and the missing-EOS penalty (set per baseline).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from datasets import Dataset
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from policy.models import disable_dropout, load_causal_lm
from policy.ppo_config import PPOConfig
from policy.sampling import use_mask_positions
from reward_model.trainer_utils import PlaceFn

RewardFn = Callable[[list[str], list[str]], "torch.Tensor | list[float]"]
LogFn = Callable[[dict[str, float], int], None]

# How each algo is named in tables and logs.
BASELINE_NAMES = {"rloo": "RLOO", "grpo": "GRPO"}
# Baseline field -> the ppo field it inherits when unset (None).
FROM_PPO = {"total_episodes": "total_episodes", "beta": "kl_coef", "temperature": "temperature",
            "max_completion_length": "response_length", "max_prompt_length": "max_prompt_length",
            "seed": "seed", "bf16": "bf16"}


class TRLBaselineConfig(BaseModel):
    """The fields we set on TRL's RLOOConfig / GRPOConfig (everything else keeps TRL's default). None = the
    `ppo` section's value (`FROM_PPO`), filled in when the experiment config is loaded."""

    model_config = ConfigDict(extra="forbid")

    algo: Literal["rloo", "grpo"] = Field("rloo", description="Which TRL trainer: RLOO or GRPO.")
    total_episodes: int | None = Field(
        None, ge=1, description="Completions sampled in total (PPO's episodes); optimizer steps = total_episodes // "
        "(per_device_train_batch_size * gradient_accumulation_steps * processes). None = ppo.total_episodes.",
    )
    learning_rate: float = Field(3e-6, gt=0.0, description="Learning rate.")
    per_device_train_batch_size: int = Field(8, ge=1, description="Completions per device per micro-batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    num_generations: int = Field(4, ge=2, description="Completions per prompt (the group / leave-one-out size).")
    max_completion_length: int | None = Field(None, ge=1, description="New tokens per completion; None = ppo.response_length.")
    max_prompt_length: int | None = Field(
        None, ge=1, description="Prompt tokens kept (from the end, as PPO keeps them); None = ppo.max_prompt_length."
    )
    temperature: float | None = Field(None, gt=0.0, description="Sampling temperature; None = ppo.temperature.")
    beta: float | None = Field(None, ge=0.0, description="KL coefficient (0 loads no reference model); None = ppo.kl_coef.")
    missing_eos_penalty: float | None = Field(
        -1.0, description="Score of a completion that hit max_completion_length without EOS (as in our PPO)."
    )
    bf16: bool | None = Field(
        None, description="bf16 mixed precision (TRL's own default True autocasts silently on CPU); None = ppo.bf16, "
        "and when that is unset too, the launch's own setting (accelerate config / ACCELERATE_MIXED_PRECISION).",
    )
    gradient_checkpointing: bool = Field(False, description="Activation checkpointing (TRL defaults it to True).")
    logging_steps: int = Field(1, ge=1, description="Log every N optimizer steps.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N optimizer steps.")
    seed: int | None = Field(None, description="Trainer seed; None = ppo.seed.")


def inherit_from_ppo(base: TRLBaselineConfig, ppo: PPOConfig) -> TRLBaselineConfig:
    """`base` with every unset shared setting taken from the ppo section (`FROM_PPO`)."""
    return base.model_copy(update={f: getattr(ppo, p) for f, p in FROM_PPO.items() if getattr(base, f) is None})


def baseline_steps(cfg: TRLBaselineConfig, world_size: int = 1) -> int:
    """Optimizer steps that sample `cfg.total_episodes` completions (each used once: TRL's num_iterations=1)."""
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world_size
    if cfg.total_episodes is None:
        raise ValueError(f"rl.baselines[{cfg.algo}].total_episodes is unset: pass the config through inherit_from_ppo")
    if cfg.total_episodes < per_step:
        raise ValueError(f"rl.baselines[{cfg.algo}].total_episodes={cfg.total_episodes} is less than one optimizer "
                         f"step of {per_step} completions (per_device_train_batch_size * gradient_accumulation_steps "
                         f"* {world_size} processes)")
    return cfg.total_episodes // per_step


def keep_prompt_end(tokenizer: PreTrainedTokenizerBase, prompts: list[str], max_tokens: int | None) -> list[str]:
    """Prompts longer than `max_tokens` cut to their last tokens (the `TL;DR:` cue stays), as PPO's sampler does."""
    if max_tokens is None:
        return list(prompts)
    out = []
    for p in prompts:
        ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        out.append(p if len(ids) <= max_tokens else tokenizer.decode(ids[-max_tokens:]))
    return out


def reward_callable(reward_fn: RewardFn, eos_token_id: int | None = None, missing_eos_penalty: float | None = None,
                    max_completion_length: int | None = None) -> Callable[..., list[float]]:
    """Wrap `reward_fn(prompts, responses)` as TRL's `fn(prompts=, completions=, completion_ids=, **columns)`.

    TRL decodes completions with special tokens skipped, so a missing EOS is detected from the ids: a
    completion of full length without the EOS id gets `missing_eos_penalty`.
    """

    def reward(prompts: list[str], completions: list[str], completion_ids: list[list[int]] | None = None, **_: Any) -> list[float]:
        scores = [float(s) for s in torch.as_tensor(reward_fn(list(prompts), list(completions))).reshape(-1).tolist()]
        if missing_eos_penalty is not None and completion_ids is not None and eos_token_id is not None:
            scores = [
                missing_eos_penalty if (eos_token_id not in ids and len(ids) >= (max_completion_length or 0)) else s
                for s, ids in zip(scores, completion_ids)
            ]
        return scores

    reward.__name__ = "reward"  # TRL names the logged metric after the function
    return reward


class _ForwardLogs(TrainerCallback):
    """Hand the Trainer's logs to our plain `log(metrics, step)` callback."""

    def __init__(self, log: LogFn) -> None:
        self.log = log

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:  # noqa: ANN001
        if logs and state.is_world_process_zero:
            self.log({k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}, state.global_step)


def train_trl_baseline(
    policy: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    reward_fn: RewardFn,
    cfg: TRLBaselineConfig,
    out_dir: str | Path,
    log: LogFn | None = None,
    place: PlaceFn | None = None,
) -> list[dict[str, float]]:
    """Train the SFT `policy` (a directory, or a model) with TRL's RLOO or GRPO; saves the result to
    `out_dir/policy`; returns the Trainer's log history. `place(model, role)` puts the policy and TRL's reference
    model where the run's device rule says (None: the Trainer's choice)."""
    trainer = build_trl_trainer(policy, tokenizer, prompts, reward_fn, cfg, out_dir, log, place)
    trainer.train()
    out_dir = Path(out_dir)
    trainer.save_model(str(out_dir / "policy"))
    tokenizer.save_pretrained(out_dir / "policy")
    return list(trainer.state.log_history)


def build_trl_trainer(
    policy: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    reward_fn: RewardFn,
    cfg: TRLBaselineConfig,
    out_dir: str | Path,
    log: LogFn | None = None,
    place: PlaceFn | None = None,
):
    """The RLOOTrainer / GRPOTrainer `train_trl_baseline` runs, ready to train (see there)."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    config_cls, trainer_cls = (RLOOConfig, RLOOTrainer) if cfg.algo == "rloo" else (GRPOConfig, GRPOTrainer)
    out_dir = Path(out_dir)
    if isinstance(policy, PreTrainedModel):
        # TRL builds its reference model from the policy's directory, so an in-memory model is saved first.
        policy.save_pretrained(out_dir / "init_policy")
        tokenizer.save_pretrained(out_dir / "init_policy")
        policy = out_dir / "init_policy"
    missing = [f for f in FROM_PPO if f != "bf16" and getattr(cfg, f) is None]  # bf16 None: the launch decides
    if missing:
        raise ValueError(f"rl.baselines[{cfg.algo}]: {missing} unset; pass the config through inherit_from_ppo")
    model = load_causal_lm(policy)  # loaded here so it can be placed before TRL moves it
    if place is not None:
        model = place(model, "policy")
    use_cpu = (not torch.cuda.is_available()) if place is None else next(model.parameters()).device.type == "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))  # processes of an accelerate launch / torchrun
    args = config_cls(
        output_dir=str(out_dir / "trainer"),
        max_steps=baseline_steps(cfg, world),
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        # False (or None) leaves the launch's mixed precision in force: transformers reads ACCELERATE_MIXED_PRECISION
        # unless bf16/fp16 is True; TRL itself would turn None into True.
        bf16=bool(cfg.bf16),
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        seed=cfg.seed,
        report_to="none",
        use_cpu=use_cpu,
        disable_dropout=True,
    )
    reward = reward_callable(reward_fn, tokenizer.eos_token_id, cfg.missing_eos_penalty, cfg.max_completion_length)
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": keep_prompt_end(tokenizer, prompts, cfg.max_prompt_length)}),
        processing_class=tokenizer,
        callbacks=[_ForwardLogs(log)] if log is not None else None,
    )
    if place is not None and trainer.ref_model is not None:
        trainer.ref_model = place(trainer.ref_model, "reference policy")
    # Train on the log-probs the sampler used (position ids from the mask), with dropout off in every form.
    for m in (trainer.model, trainer.ref_model):
        if m is not None:
            use_mask_positions(m)
            disable_dropout(m)
    return trainer
