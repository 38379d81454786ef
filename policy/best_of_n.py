"""Best-of-n sampling: draw n responses per prompt, keep the one the reward likes best.

The baseline PPO has to beat at equal KL (Stiennon et al. 2020, Fig. 4; Gao et al. 2022): the KL of the
best-of-n distribution from the sampling policy is analytically log n - (n-1)/n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.rl_utils import apply_missing_eos_penalty
from policy.sampling import generate, left_pad_prompts

RewardFn = Callable[[list[str], list[str]], "torch.Tensor | list[float]"]


class BestOfNConfig(BaseModel):
    """How many samples per prompt and how they are drawn."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(16, ge=1, le=64, description="Samples per prompt; the highest-reward one is kept.")
    response_length: int = Field(53, ge=1, description="New tokens sampled per response (truncated after EOS).")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature (1.0 keeps the analytic KL exact).")
    max_prompt_length: int = Field(512, ge=1, description="Prompt tokens kept (from the end).")
    batch_size: int = Field(32, ge=1, description="Sequences generated per forward chunk.")
    missing_eos_penalty: float | None = Field(
        None, description="Score of a response with no EOS (as in PPO); None keeps the reward's score."
    )


@dataclass
class BestOfNResult:
    """B prompts: the chosen texts and their scores, every candidate's score, and the analytic KL."""

    texts: list[str]  # [B] best response per prompt
    scores: torch.Tensor  # [B] score of the chosen response
    all_scores: torch.Tensor  # [B, n]
    kl: float  # log n - (n-1)/n nats, the same for every prompt


def analytic_kl(n: int) -> float:
    """KL(best-of-n || policy) = log n - (n-1)/n (exact for continuous rewards without ties)."""
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


@torch.no_grad()
def best_of_n(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    reward_fn: RewardFn,
    cfg: BestOfNConfig,
) -> BestOfNResult:
    """Sample `cfg.n` responses for every prompt, score them all with `reward_fn`, keep each prompt's best."""
    policy.eval()
    repeated = [p for p in prompts for _ in range(cfg.n)]  # prompt-major: rows b*n .. b*n+n-1 share prompt b
    texts: list[str] = []
    has_eos: list[torch.Tensor] = []
    for start in range(0, len(repeated), cfg.batch_size):
        ids, mask = left_pad_prompts(tokenizer, repeated[start : start + cfg.batch_size], cfg.max_prompt_length)
        gen = generate(policy, ids, mask, cfg.response_length, cfg.temperature, tokenizer.eos_token_id,
                       tokenizer.pad_token_id, tokenizer)
        texts.extend(gen.texts)
        has_eos.append(gen.has_eos.cpu())
    scores = torch.as_tensor(reward_fn(repeated, texts), dtype=torch.float32).reshape(-1).cpu()
    if scores.numel() != len(texts):
        raise ValueError(f"reward_fn returned {scores.numel()} scores for {len(texts)} responses")
    scores = apply_missing_eos_penalty(scores, torch.cat(has_eos), cfg.missing_eos_penalty)
    all_scores = scores.view(len(prompts), cfg.n)  # [B, n]
    best = all_scores.argmax(dim=1)  # [B]
    chosen = [texts[b * cfg.n + int(j)] for b, j in enumerate(best)]
    return BestOfNResult(chosen, all_scores.gather(1, best[:, None]).squeeze(1), all_scores, analytic_kl(cfg.n))
