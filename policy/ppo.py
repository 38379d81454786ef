"""PPO for the summarization policy, after Stiennon et al. 2020 and Huang et al. 2024 ("The N+
Implementation Details of RLHF with PPO: A Case Study on TL;DR Summarization").

Run as a stage: `python -m pipelines ppo --config configs/demo.yaml` (or `accelerate launch -m pipelines ppo
...` for DDP / DeepSpeed ZeRO-2); the stage builds the models and calls `train_ppo`.

One update (numbered as in the loop below):
  1. take this update's prompts            2. sample exactly `response_length` tokens, truncate after EOS
  3. score the truncated texts; a response without EOS gets `missing_eos_penalty`; optionally each score
     minus the mean of its prompt's other samples (`samples_per_prompt` > 1, `score_baseline: leave_one_out`)
  4. log-probs (policy, reference) and values, at the sampling temperature
  5. per-token reward: -beta * KL, plus the score on the last real token       6. optional reward whitening
  7. GAE advantages and returns, advantages whitened
  8. `num_ppo_epochs` passes of clipped policy + clipped value loss over minibatches (gradient accumulation)
  9. metrics, adaptive beta, linear LR decay, samples, checkpoint
Policy and value model are separate networks trained by one optimizer with a parameter group each (own
learning rates; wrapped in one module so DDP and DeepSpeed see one model); the reference policy and the reward
function stay frozen. Optionally the first `critic_warmup_updates` updates train only the value model.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from policy.models import disable_dropout
from policy.rl_utils import (
    KLController,
    apply_missing_eos_penalty,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    entropy_from_logits,
    explained_variance,
    kl_estimate,
    last_token_index,
    leave_one_out_centered,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
)
from policy.sampling import concat_query_response, forward_logprobs, generate, left_pad_prompts, response_logits

RewardFn = Callable[[list[str], list[str]], "torch.Tensor | list[float]"]
LogFn = Callable[[dict[str, float], int], None]
SamplesFn = Callable[[list[dict[str, Any]], int], None]


class LoraSpec(BaseModel):
    """LoRA adapters on the policy (peft); the value model stays fully trainable."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (lora_alpha).")
    target_modules: list[str] | str = Field(
        "all-linear", description="Module names to adapt, or 'all-linear' (peft's preset)."
    )


class PPOConfig(BaseModel):
    """Everything `train_ppo` needs; defaults follow the N+ details paper's TL;DR runs."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _baseline_needs_groups(self) -> "PPOConfig":
        if self.score_baseline == "leave_one_out" and self.samples_per_prompt < 2:
            raise ValueError(
                f"ppo.score_baseline=leave_one_out needs ppo.samples_per_prompt >= 2 (got {self.samples_per_prompt})"
            )
        return self

    # --- schedule and batch sizes (derived sizes: see `derive_sizes`)
    total_episodes: int = Field(1024, ge=1, description="Prompts sampled in total; updates = total_episodes // batch_size.")
    per_device_train_batch_size: int = Field(8, ge=1, description="Rollouts per device in one forward/backward.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    num_mini_batches: int = Field(1, ge=1, description="Optimizer steps per PPO epoch (minibatches per rollout batch).")
    num_ppo_epochs: int = Field(4, ge=1, description="Passes over each rollout batch.")
    local_rollout_forward_batch_size: int = Field(
        16, ge=1, description="Rows per chunk for generation and no-grad forwards during rollouts."
    )
    seed: int = Field(0, description="Seed for prompt order, sampling and initialization.")
    allow_weak_reward: bool = Field(
        False, description="Start PPO even when the reward model's held-out evaluation is below random or below "
        "longer-wins (reward_model.evaluate.weak_reward_reasons); otherwise the ppo stage refuses.",
    )
    # --- generation
    max_prompt_length: int = Field(512, ge=1, description="Prompt tokens kept (from the end, so 'TL;DR:' stays).")
    response_length: int = Field(53, ge=1, description="New tokens sampled per prompt (fixed; truncated after EOS).")
    temperature: float = Field(0.7, gt=0.0, description="Sampling temperature, also applied to logits in training.")
    missing_eos_penalty: float | None = Field(
        -1.0, description="Score given to responses with no EOS in response_length tokens; None disables."
    )
    reuse_sampling_logprobs: bool = Field(
        False,
        description="Use the sampler's log-probs as the old log-probs instead of a fresh forward pass "
        "(faster; equal up to float error in fp32, the N+ paper recomputes).",
    )
    # --- reward shaping
    kl_coef: float = Field(0.05, ge=0.0, description="Initial KL penalty coefficient beta.")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k1", description="Per-token KL estimator in the reward.")
    target_kl: float | None = Field(
        None, gt=0.0, description="Adaptive beta toward this KL (nats per response, Ziegler et al.); None = fixed."
    )
    kl_horizon: int = Field(10_000, ge=1, description="Horizon (episodes) of the adaptive KL controller.")
    whiten_rewards: bool = Field(False, description="Whiten per-token rewards (mean kept) before GAE.")
    samples_per_prompt: int = Field(
        1, ge=1, description="Responses sampled per prompt in an update (consecutive rows); the rollouts per update "
        "stay per_device_train_batch_size * gradient_accumulation_steps * num_mini_batches, so fewer prompts.",
    )
    score_baseline: Literal["none", "leave_one_out"] = Field(
        "none", description="leave_one_out: each score minus the mean score of the other samples of its prompt "
        "before the KL penalty is added (RLOO's baseline inside PPO; needs samples_per_prompt >= 2).",
    )
    # --- PPO
    gamma: float = Field(1.0, ge=0.0, le=1.0, description="Discount.")
    lam: float = Field(0.95, ge=0.0, le=1.0, description="GAE lambda.")
    cliprange: float = Field(0.2, gt=0.0, description="Policy ratio clip epsilon.")
    cliprange_value: float = Field(0.2, gt=0.0, description="Value clip range around the rollout values.")
    vf_coef: float = Field(0.1, ge=0.0, description="Value loss weight.")
    # --- optimization
    learning_rate: float = Field(3e-6, gt=0.0, description="Adam learning rate of the policy (and of the value model "
                                 "unless value_learning_rate is set).")
    value_learning_rate: float | None = Field(
        None, gt=0.0, description="Adam learning rate of the value model; None = learning_rate. A critic started from "
        "the reward model has to move from RM scores of prefixes to returns, which one step per update at the "
        "policy's rate does slowly.",
    )
    critic_warmup_updates: int = Field(
        0, ge=0, description="The first N updates train only the value model on the SFT policy's rollouts (the "
        "policy is not stepped; its LR schedule starts after them). They count toward total_episodes.",
    )
    adam_eps: float = Field(1e-5, gt=0.0, description="Adam epsilon (N+ detail: 1e-5, not 1e-8).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    lr_schedule: Literal["linear", "constant"] = Field("linear", description="Linear decay to 0 over the updates, or constant.")
    max_grad_norm: float | None = Field(None, gt=0.0, description="Gradient clipping norm; None = no clipping.")
    bf16: bool = Field(False, description="bf16 autocast (GPU); weights and optimizer stay fp32.")
    lora: LoraSpec | None = Field(None, description="LoRA on the policy; None trains all policy weights.")
    # --- logging and checkpoints
    sample_every: int = Field(10, ge=1, description="Hand `num_samples` samples to the samples callback every N updates.")
    num_samples: int = Field(8, ge=0, description="Samples handed over each time.")
    save_every: int = Field(50, ge=1, description="Checkpoint every N updates (and at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")
    resume: bool = Field(True, description="Resume from the newest complete checkpoint in out_dir if there is one.")


@dataclass(frozen=True)
class PPOSizes:
    """Batch sizes derived from the config once: micro <= local minibatch <= local batch <= global batch."""

    world_size: int
    micro_batch_size: int  # rollouts per device per forward/backward
    local_mini_batch_size: int  # micro * grad_accum: rollouts per device per optimizer step
    local_batch_size: int  # local minibatch * num_mini_batches: rollouts per device per update
    batch_size: int  # local batch * world size: rollouts per update
    num_updates: int


def derive_sizes(cfg: PPOConfig, world_size: int) -> PPOSizes:
    local_mini = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    local_batch = local_mini * cfg.num_mini_batches
    batch = local_batch * world_size
    num_updates = cfg.total_episodes // batch
    if num_updates < 1:
        raise ValueError(
            f"ppo.total_episodes={cfg.total_episodes} is smaller than one batch of {batch} rollouts "
            f"(per_device_train_batch_size * gradient_accumulation_steps * num_mini_batches * {world_size} processes)"
        )
    if cfg.critic_warmup_updates >= num_updates:
        raise ValueError(
            f"ppo.critic_warmup_updates={cfg.critic_warmup_updates} leaves no policy update out of {num_updates} "
            f"(total_episodes {cfg.total_episodes} // batch {batch}); lower it or raise ppo.total_episodes"
        )
    if local_batch % cfg.samples_per_prompt:
        raise ValueError(
            f"ppo.samples_per_prompt={cfg.samples_per_prompt} does not divide the {local_batch} rollouts per device "
            "per update (per_device_train_batch_size * gradient_accumulation_steps * num_mini_batches): a prompt's "
            "samples must stay on one process"
        )
    sizes = PPOSizes(world_size, cfg.per_device_train_batch_size, local_mini, local_batch, batch, num_updates)
    assert sizes.local_batch_size % sizes.local_mini_batch_size == 0
    assert sizes.local_mini_batch_size % sizes.micro_batch_size == 0
    return sizes


@dataclass
class PPOResult:
    """What a run leaves behind: per-update metrics, handed-over samples and the saved model directories."""

    history: list[dict[str, float]]
    samples: list[dict[str, Any]]
    policy_dir: Path
    value_model_dir: Path
    num_updates: int
    final_metrics: dict[str, float] = field(default_factory=dict)


class PPODivergedError(RuntimeError):
    """Raised when a loss, score or parameter becomes NaN/inf; the last good checkpoint is left untouched."""

    def __init__(self, message: str, last_checkpoint: Path | None) -> None:
        super().__init__(f"{message}; last good checkpoint: {last_checkpoint or 'none saved yet'}")
        self.last_checkpoint = last_checkpoint


# ----------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------
def build_value_model(policy: PreTrainedModel, reward_model_dir: str | Path | None = None) -> PreTrainedModel:
    """Scalar-head value model: from the reward model directory when given (N+ detail: the critic starts as
    the RM), else the policy's backbone with a fresh zero head."""
    if reward_model_dir is not None:
        model = AutoModelForSequenceClassification.from_pretrained(str(reward_model_dir), num_labels=1)
    else:
        config = copy.deepcopy(policy.config)
        config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(config)
        model.base_model.load_state_dict(policy.base_model.state_dict())
        nn.init.zeros_(_value_head(model).weight)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = policy.config.pad_token_id
    return model


def lr_multipliers(cfg: PPOConfig, num_updates: int) -> list[Callable[[int], float]]:
    """LR multipliers (policy, value) after k finished updates. The policy's is 0 during the critic warm-up and
    its linear decay runs over the updates after it; the value model's decays over all updates."""
    warmup = cfg.critic_warmup_updates

    def linear(k: int, start: int) -> float:
        if cfg.lr_schedule == "constant":
            return 1.0
        return max(0.0, 1.0 - (k - start) / (num_updates - start))

    return [lambda k: 0.0 if k < warmup else linear(k, warmup), lambda k: linear(k, 0)]


def _value_head(model: PreTrainedModel) -> nn.Module:
    for name in ("score", "classifier", "v_head"):
        if hasattr(model, name):
            return getattr(model, name)
    raise ValueError(f"value model {type(model).__name__} has no scalar head named score/classifier/v_head")


class PolicyAndValue(nn.Module):
    """Policy and value model as one module, so one optimizer and one DDP/DeepSpeed wrapper cover both."""

    def __init__(self, policy: PreTrainedModel, value_model: PreTrainedModel) -> None:
        super().__init__()
        self.policy = policy
        self.value_model = value_model

    def values(self, query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor) -> torch.Tensor:
        """[B, R] value of the state before each response token (hidden state at position q-1+t)."""
        input_ids, attention_mask, position_ids = concat_query_response(query_ids, query_mask, response_ids)
        hidden = self.value_model.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state  # [B, Q+R, H]
        values = _value_head(self.value_model)(hidden).squeeze(-1)  # [B, Q+R]
        return values[:, query_ids.size(1) - 1 : -1].float()

    def forward(
        self, query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = response_logits(self.policy, query_ids, query_mask, response_ids, temperature)  # [B, R, V]
        return logits, self.values(query_ids, query_mask, response_ids)


def _apply_lora(policy: PreTrainedModel, spec: LoraSpec) -> PreTrainedModel:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=0.0, target_modules=spec.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(policy, config)


# ----------------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------------
class _Counters:
    """Step and beta, registered with accelerate so `save_state`/`load_state` carry them."""

    def __init__(self, step: int, beta: float) -> None:
        self.step, self.beta = step, beta

    def state_dict(self) -> dict[str, float]:
        return {"step": self.step, "beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.step, self.beta = int(state["step"]), float(state["beta"])


def latest_checkpoint(out_dir: Path) -> Path | None:
    """Newest complete checkpoint (`ppo_state.json` is written last, so its presence marks completeness)."""
    done = sorted((out_dir / "checkpoints").glob("step-*/ppo_state.json"))
    return done[-1].parent if done else None


def _save_checkpoint(accelerator: Accelerator, out_dir: Path, step: int, beta: float, keep: int) -> Path:
    final = out_dir / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model, optimizer, registered scheduler/counters, RNG states per process
    if accelerator.is_main_process:
        (tmp / "ppo_state.json").write_text(json.dumps({"step": step, "beta": beta}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in sorted((out_dir / "checkpoints").glob("step-*[0-9]"))[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


# ----------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------
def _prompt_columns(prompts_dataset: Any) -> tuple[list[str], list[str]]:
    """(prompts, gold contexts): a list of strings, or a dataset with `prompt` (and optional `post_text`)."""
    if isinstance(prompts_dataset, (list, tuple)):
        prompts = list(prompts_dataset)
        return prompts, prompts
    columns = getattr(prompts_dataset, "column_names", None) or []
    if "prompt" not in columns:
        raise ValueError(f"prompts_dataset needs a 'prompt' column (SFT row schema), has {columns}")
    prompts = list(prompts_dataset["prompt"])
    contexts = list(prompts_dataset["post_text"]) if "post_text" in columns else prompts
    return prompts, contexts


def _update_indices(
    update: int, sizes: PPOSizes, n_prompts: int, seed: int, process_index: int, samples_per_prompt: int = 1
) -> list[int]:
    """This process's prompt indices for `update` (1-based): a pure function of the step, so resume is exact.
    The prompt stream is one seeded permutation per epoch over the dataset; each prompt taken from it fills
    `samples_per_prompt` consecutive rows."""
    local_prompts = sizes.local_batch_size // samples_per_prompt
    start = ((update - 1) * sizes.batch_size + process_index * sizes.local_batch_size) // samples_per_prompt
    indices = []
    for position in range(start, start + local_prompts):
        epoch, offset = divmod(position, n_prompts)
        perm = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        indices.extend([int(perm[offset])] * samples_per_prompt)
    return indices


def _scores_tensor(raw: torch.Tensor | Sequence[float], batch: int, device: torch.device, what: str) -> torch.Tensor:
    scores = torch.as_tensor(raw, dtype=torch.float32).reshape(-1).to(device)
    if scores.numel() != batch:
        raise ValueError(f"{what} returned {scores.numel()} scores for {batch} responses; expected one per response")
    return scores


def configure_deepspeed(accelerator: Accelerator, cfg: PPOConfig) -> None:
    """Under `accelerate launch` with DeepSpeed, refuse ZeRO-3 and give DeepSpeed PPO's batch sizes and clipping.
    accelerate derives the micro-batch from a prepared dataloader, and PPO prepares none (its rollouts are made
    here), so it would refuse the config's 'auto'; the global batch is set with it so the three always agree.
    Under DeepSpeed the engine clips, and accelerate would give it 1.0 whatever `max_grad_norm` says."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None:
        ds = plugin.deepspeed_config
        if ds.get("zero_optimization", {}).get("stage", 0) == 3:
            raise ValueError(
                "ppo does not support DeepSpeed ZeRO-3 (zero_stage: 3 in the accelerate config): it generates with "
                "the unwrapped policy and keeps the reference model outside DeepSpeed, so ZeRO-3's partitioned "
                "weights would be read as empty; launch ppo with configs/accelerate/deepspeed_zero2.yaml"
            )
        ds["train_micro_batch_size_per_gpu"] = cfg.per_device_train_batch_size
        ds["gradient_accumulation_steps"] = cfg.gradient_accumulation_steps
        ds["train_batch_size"] = (
            cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
        )
        ds["gradient_clipping"] = cfg.max_grad_norm if cfg.max_grad_norm is not None else 0.0


def train_ppo(
    policy: PreTrainedModel,
    ref_policy: PreTrainedModel,
    value_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts_dataset: Any,
    reward_fn: RewardFn,
    cfg: PPOConfig,
    out_dir: str | Path,
    log: LogFn | None = None,
    gold_fn: RewardFn | None = None,
    on_samples: SamplesFn | None = None,
    accelerator: Accelerator | None = None,
) -> PPOResult:
    """Train `policy` with PPO against `reward_fn(prompts, responses)`; see the module docstring.

    `prompts_dataset`: list of prompt strings, or a dataset with a `prompt` column (and `post_text`, which
    is what `gold_fn(post_texts, responses)` receives). Writes `out_dir/checkpoints/step-*/` every
    `save_every` updates and the final `out_dir/policy/` (+ tokenizer) and `out_dir/value_model/`.
    """
    out_dir = Path(out_dir)
    accelerator = accelerator or Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision="bf16" if cfg.bf16 else "no"
    )
    sizes = derive_sizes(cfg, accelerator.num_processes)
    set_seed(cfg.seed, device_specific=True)
    prompts, contexts = _prompt_columns(prompts_dataset)
    if not prompts:
        raise ValueError("prompts_dataset is empty")
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos_id is None or pad_id is None or eos_id == pad_id:
        raise ValueError(f"tokenizer needs distinct eos and pad tokens (eos={eos_id}, pad={pad_id})")

    # Models: dropout off everywhere (N+ detail), reference frozen, policy + value trained together.
    for m in (policy, ref_policy, value_model):
        disable_dropout(m)
    ref_policy.requires_grad_(False).eval()
    if cfg.lora is not None:
        policy = _apply_lora(policy, cfg.lora)
    model = PolicyAndValue(policy, value_model)
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.policy.parameters() if p.requires_grad], "lr": cfg.learning_rate},
         {"params": [p for p in model.value_model.parameters() if p.requires_grad],
          "lr": cfg.value_learning_rate or cfg.learning_rate}],
        eps=cfg.adam_eps, weight_decay=cfg.weight_decay,
    )
    # One LR multiplier per group (policy, value), stepped once per update, not per optimizer step.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multipliers(cfg, sizes.num_updates))
    configure_deepspeed(accelerator, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    ref_policy.to(accelerator.device)
    kl_ctl = KLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
    counters = _Counters(0, kl_ctl.value)
    accelerator.register_for_checkpointing(scheduler, counters)

    last_ckpt = latest_checkpoint(out_dir) if cfg.resume else None
    if last_ckpt is not None:
        accelerator.load_state(str(last_ckpt))  # also restores the RNG states saved with it
        kl_ctl.value = counters.beta
        accelerator.print(f"ppo: resumed from {last_ckpt} (update {counters.step}/{sizes.num_updates})")

    history: list[dict[str, float]] = []
    samples: list[dict[str, Any]] = []
    device = accelerator.device
    chunk = cfg.local_rollout_forward_batch_size
    bar = tqdm(range(counters.step + 1, sizes.num_updates + 1), desc="ppo", disable=not accelerator.is_main_process)
    for update in bar:
        t_step = time.perf_counter()
        unwrapped = accelerator.unwrap_model(model)

        # 1. this update's prompts: [local_batch] strings, left-padded once so every chunk shares the width Q
        idx = _update_indices(update, sizes, len(prompts), cfg.seed, accelerator.process_index, cfg.samples_per_prompt)
        batch_prompts, batch_contexts = [prompts[i] for i in idx], [contexts[i] for i in idx]
        query_ids, query_mask = left_pad_prompts(tokenizer, batch_prompts, cfg.max_prompt_length)
        query_ids, query_mask = query_ids.to(device), query_mask.to(device)  # [B, Q]

        # 2. sample exactly response_length tokens; truncate after the first EOS
        t0 = time.perf_counter()
        unwrapped.eval()
        with torch.no_grad(), accelerator.autocast():
            gens = [
                generate(unwrapped.policy, query_ids[s : s + chunk], query_mask[s : s + chunk], cfg.response_length,
                         cfg.temperature, eos_id, pad_id, tokenizer)
                for s in range(0, len(idx), chunk)
            ]
        response_ids = torch.cat([g.response_ids for g in gens])  # [B, R]
        mask = torch.cat([g.response_mask for g in gens])  # [B, R] bool
        has_eos = torch.cat([g.has_eos for g in gens])  # [B]
        texts = [t for g in gens for t in g.texts]
        time_generate = time.perf_counter() - t0

        # 3. score the truncated texts with the frozen reward; no EOS -> fixed penalty
        t0 = time.perf_counter()
        raw_scores = _scores_tensor(reward_fn(batch_prompts, texts), len(texts), device, "reward_fn")
        if not torch.isfinite(raw_scores).all():
            raise PPODivergedError(f"ppo update {update}: reward_fn returned non-finite scores", latest_checkpoint(out_dir))
        scores = apply_missing_eos_penalty(raw_scores, has_eos, cfg.missing_eos_penalty)  # [B]
        terminal = leave_one_out_centered(scores, cfg.samples_per_prompt) if cfg.score_baseline == "leave_one_out" else scores
        gold = _scores_tensor(gold_fn(batch_contexts, texts), len(texts), device, "gold_fn") if gold_fn else None
        time_score = time.perf_counter() - t0

        # 4. old log-probs, reference log-probs and values [B, R], all at the sampling temperature
        t0 = time.perf_counter()
        with torch.no_grad(), accelerator.autocast():
            old_logprobs, ref_logprobs, values = [], [], []
            for s in range(0, len(idx), chunk):
                q, qm, r, m = query_ids[s : s + chunk], query_mask[s : s + chunk], response_ids[s : s + chunk], mask[s : s + chunk]
                if cfg.reuse_sampling_logprobs:
                    old_logprobs.append(gens[s // chunk].logprobs)
                else:
                    old_logprobs.append(forward_logprobs(unwrapped.policy, q, qm, r, m, cfg.temperature))
                ref_logprobs.append(forward_logprobs(ref_policy, q, qm, r, m, cfg.temperature))
                values.append(unwrapped.values(q, qm, r) * m)
        old_logprobs, ref_logprobs, values = torch.cat(old_logprobs), torch.cat(ref_logprobs), torch.cat(values)
        time_forward = time.perf_counter() - t0

        # 5. per-token rewards: -beta * KL everywhere, + score (or its centred value) on the last real token
        kl = kl_estimate(old_logprobs, ref_logprobs, cfg.kl_estimator) * mask  # [B, R]
        non_score_reward = -kl_ctl.value * kl
        rewards = non_score_reward.clone()
        rows = torch.arange(len(idx), device=device)
        rewards[rows, last_token_index(mask)] += terminal

        # 6. optional reward whitening (mean kept, N+ detail)
        if cfg.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask

        # 7. GAE advantages and returns; advantages whitened over the batch
        advantages, returns = compute_gae(rewards, values, mask, cfg.gamma, cfg.lam)
        advantages = masked_whiten(advantages, mask) * mask

        # 8. PPO epochs over minibatches; accelerate steps the optimizer every grad_accum micro-batches.
        #    During the critic warm-up the policy loss is weighted 0 (kept in the graph so DDP sees every parameter).
        t0 = time.perf_counter()
        pg_weight = 0.0 if update <= cfg.critic_warmup_updates else 1.0
        unwrapped.train()
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in ("pg_loss", "vf_loss", "clipfrac", "approxkl", "ratio", "vf_clipfrac", "vpred", "entropy")}
        for _ in range(cfg.num_ppo_epochs):
            order = torch.randperm(sizes.local_batch_size, device=device)
            for mb in range(0, sizes.local_batch_size, sizes.local_mini_batch_size):
                for micro in range(mb, mb + sizes.local_mini_batch_size, sizes.micro_batch_size):
                    i = order[micro : micro + sizes.micro_batch_size]
                    with accelerator.accumulate(model):
                        logits, vpred = model(query_ids[i], query_mask[i], response_ids[i], cfg.temperature)
                        new_logprobs = logprobs_from_logits(logits, response_ids[i])  # [b, R]
                        pg_loss, pg_stats = clipped_policy_loss(new_logprobs, old_logprobs[i], advantages[i], mask[i], cfg.cliprange)
                        vf_loss, vf_stats = clipped_value_loss(vpred, values[i], returns[i], mask[i], cfg.cliprange_value)
                        loss = pg_weight * pg_loss + cfg.vf_coef * vf_loss
                        if not torch.isfinite(loss):
                            raise PPODivergedError(
                                f"ppo update {update}: non-finite loss (policy {pg_loss.item()}, value {vf_loss.item()})",
                                latest_checkpoint(out_dir),
                            )
                        accelerator.backward(loss)
                        if cfg.max_grad_norm is not None and accelerator.sync_gradients:
                            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad()
                    with torch.no_grad():
                        for key, value in (("pg_loss", pg_loss), ("vf_loss", vf_loss), ("clipfrac", pg_stats["clipfrac"]),
                                           ("approxkl", pg_stats["approxkl"]), ("ratio", pg_stats["ratio"]),
                                           ("vf_clipfrac", vf_stats["clipfrac"]), ("vpred", masked_mean(vpred, mask[i])),
                                           ("entropy", masked_mean(entropy_from_logits(logits), mask[i]))):
                            stats[key].append(value.detach())
        time_train = time.perf_counter() - t0

        # 9. metrics (averaged over processes), beta, LR, samples, checkpoint
        def avg(t: torch.Tensor) -> float:
            return accelerator.reduce(t.detach().float().mean().reshape(1), "mean").item()

        step_time = time.perf_counter() - t_step
        metrics = {
            "objective/scores": avg(scores),
            "objective/raw_scores": avg(raw_scores),
            "objective/kl": avg(kl.sum(1)),
            "objective/entropy": avg((-old_logprobs * mask).sum(1)),
            "objective/non_score_reward": avg(non_score_reward.sum(1)),
            "objective/rlhf_reward": avg(scores + non_score_reward.sum(1)),
            "objective/beta": kl_ctl.value,
            "objective/response_length": avg(mask.float().sum(1)),
            "objective/no_eos_rate": avg((~has_eos).float()),
            "ppo/policy/clipfrac_avg": avg(torch.stack(stats["clipfrac"])),
            "ppo/policy/approxkl_avg": avg(torch.stack(stats["approxkl"])),
            "ppo/policy/entropy_avg": avg(torch.stack(stats["entropy"])),
            "ppo/loss/policy_avg": avg(torch.stack(stats["pg_loss"])),
            "ppo/loss/value": avg(torch.stack(stats["vf_loss"])),
            "ppo/val/vpred": avg(torch.stack(stats["vpred"])),
            "ppo/val/clipfrac_avg": avg(torch.stack(stats["vf_clipfrac"])),
            "ppo/val/ratio": avg(torch.stack(stats["ratio"])),
            "ppo/val/explained_variance": avg(explained_variance(values, returns, mask)),
            "ppo/returns_mean": avg(masked_mean(returns, mask)),
            "ppo/lr": scheduler.get_last_lr()[0],
            "ppo/value_lr": scheduler.get_last_lr()[1],
            "time/generate": time_generate,
            "time/score": time_score,
            "time/forward": time_forward,
            "time/train": time_train,
            "time/step": step_time,
            "episodes": update * sizes.batch_size,
            "episodes_per_second": sizes.batch_size / step_time,
        }
        if gold is not None:
            metrics["objective/gold"] = avg(gold)
        if device.type == "cuda":  # what a launch config needs: the peak on this process's GPU so far
            metrics["memory/peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        if cfg.score_baseline != "none":
            metrics["objective/terminal_reward_std"] = avg(terminal.std().reshape(1))
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise PPODivergedError(f"ppo update {update}: non-finite metrics {bad}", latest_checkpoint(out_dir))
        history.append(metrics)
        if log is not None and accelerator.is_main_process:
            log(metrics, update)
        bar.set_postfix(score=f"{metrics['objective/scores']:.3f}", kl=f"{metrics['objective/kl']:.3f}")

        kl_ctl.update(metrics["objective/kl"], sizes.batch_size)
        scheduler.step()
        if cfg.num_samples and (update == 1 or update % cfg.sample_every == 0):
            rows_out = [
                {"step": update, "prompt": batch_prompts[j], "response": texts[j], "score": scores[j].item(),
                 "has_eos": bool(has_eos[j]), "kl": kl[j].sum().item(), **({"gold": gold[j].item()} if gold is not None else {})}
                for j in range(min(cfg.num_samples, len(texts)))
            ]
            samples.extend(rows_out)
            if on_samples is not None and accelerator.is_main_process:
                on_samples(rows_out, update)
        if update % cfg.save_every == 0 or update == sizes.num_updates:
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise PPODivergedError(f"ppo update {update}: non-finite parameters", latest_checkpoint(out_dir))
            counters.step, counters.beta = update, kl_ctl.value
            _save_checkpoint(accelerator, out_dir, update, kl_ctl.value, cfg.keep_checkpoints)

    # Final models in the ordinary HF layout for the next stages (LoRA merged into the policy).
    policy_dir, value_dir = out_dir / "policy", out_dir / "value_model"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        final_policy = final.policy
        if cfg.lora is not None:
            final_policy = copy.deepcopy(final_policy).merge_and_unload()
        final_policy.save_pretrained(policy_dir)
        tokenizer.save_pretrained(policy_dir)
        final.value_model.save_pretrained(value_dir)
    accelerator.wait_for_everyone()
    return PPOResult(history, samples, policy_dir, value_dir, sizes.num_updates, history[-1] if history else {})
