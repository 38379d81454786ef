"""What `train_ppo` is told: its config, and the batch sizes derived from it once (cleanrl's shape).

    cfg = PPOConfig(total_episodes=640, per_device_train_batch_size=8, num_mini_batches=2)
    sizes = derive_sizes(cfg, world_size=1)     # 2 updates x ... : micro <= minibatch <= batch, checked here
    train_ppo(..., cfg, out_dir, sizes=sizes)   # policy/ppo.py

Defaults follow the N+ details paper's TL;DR runs (Huang et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    seed: int = Field(
        0, description="Seed for prompt order, sampling and initialization; unset in an experiment config = run.seed."
    )
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
    bf16: bool | None = Field(
        None, description="bf16 autocast (GPU); weights and optimizer stay fp32. None = the launch's own setting "
        "(accelerate config or ACCELERATE_MIXED_PRECISION; `no` when neither says).",
    )
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
