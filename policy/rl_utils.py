"""Tensor helpers shared by PPO, best-of-n, steering and evaluation, written once.

Conventions (Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO"):
- A response is a fixed-length row `[batch, response_length]` of token ids. After the first EOS every token
  is replaced by pad; the EOS itself is kept and counts as a real token (the reward is read there).
- `mask` tensors are True/1 on real tokens (up to and including the first EOS) and False/0 on padding.
- Every mean over tokens is a masked mean, so padding never moves a statistic.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

KLEstimator = Literal["k1", "k2", "k3"]


# ----------------------------------------------------------------------------------------------------------
# masked statistics
# ----------------------------------------------------------------------------------------------------------
def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is true (over `dim`, or over everything when `dim` is None)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked entries; Bessel-corrected like the reference implementations."""
    mean = masked_mean(values, mask)
    centered = values - mean
    variance = masked_mean(centered**2, mask)
    if unbiased:
        count = mask.to(values.dtype).sum()
        if count < 2:
            raise ValueError(f"masked_var needs at least 2 unmasked values for an unbiased variance, got {count}")
        variance = variance * count / (count - 1)
    return variance


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """(values - mean) / std over the masked entries; `shift_mean=False` keeps the mean (reward whitening)."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


# ----------------------------------------------------------------------------------------------------------
# EOS handling
# ----------------------------------------------------------------------------------------------------------
def first_true_indices(bools: torch.Tensor, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """Index of the first True in each row of `bools` [batch, T]; T where a row has none."""
    row_len = bools.size(-1)
    positions = torch.arange(row_len, device=bools.device, dtype=dtype)
    # Non-true positions get `row_len`, so the min is the first true index (or row_len).
    return torch.where(bools, positions, torch.full_like(positions, row_len)).min(dim=-1).values


def first_eos_index(response_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """[batch] index of the first EOS in each response [batch, R]; R where there is none."""
    return first_true_indices(response_ids == eos_token_id)


def truncate_after_eos(
    response_ids: torch.Tensor, eos_token_id: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace every token after the first EOS by pad (the EOS stays).

    Returns (truncated_ids [B, R], mask [B, R] bool, true on real tokens incl. the EOS,
    has_eos [B] bool). A response without EOS keeps all R tokens and gets has_eos False.
    """
    eos_idx = first_eos_index(response_ids, eos_token_id)  # [B]
    positions = torch.arange(response_ids.size(1), device=response_ids.device)  # [R]
    mask = positions.unsqueeze(0) <= eos_idx.unsqueeze(1)  # [B, R]
    truncated = torch.where(mask, response_ids, torch.full_like(response_ids, pad_token_id))
    has_eos = eos_idx < response_ids.size(1)
    return truncated, mask, has_eos


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """[batch] index of the last real token of each row of `mask` [batch, R] (the EOS, or R-1 without one)."""
    return (mask.long().sum(-1) - 1).clamp(min=0)


def apply_missing_eos_penalty(
    scores: torch.Tensor, has_eos: torch.Tensor, penalty: float | None
) -> torch.Tensor:
    """Scores of responses that never emitted EOS are replaced by a fixed `penalty` (N+ detail #23)."""
    if penalty is None:
        return scores
    return torch.where(has_eos, scores, torch.full_like(scores, penalty))


def leave_one_out_centered(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each score minus the mean of the other `group_size - 1` scores of its prompt (RLOO's baseline).

    `scores` holds consecutive groups of `group_size` responses to one prompt. What is left is how much better a
    response is than its siblings: the prompt's own level (a long post, a lenient reward model on this topic)
    cancels, which a critic that explains little of the return's variance cannot do."""
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 for a leave-one-out baseline, got {group_size}")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    groups = scores.reshape(-1, group_size)
    others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).reshape(scores.shape)


# ----------------------------------------------------------------------------------------------------------
# log-probabilities, entropy, KL
# ----------------------------------------------------------------------------------------------------------
def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(labels) under `logits` [..., V] -> [...]; computed in float32 for stability."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return torch.gather(logp, -1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical given by `logits` [..., V] -> [...]."""
    logits = logits.float()
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: KLEstimator = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || ref) from samples of the policy (Schulman, "Approximating KL").

    With log r = ref - policy: k1 = -log r (unbiased, can be negative), k2 = (log r)^2 / 2 (biased, low
    variance), k3 = (r - 1) - log r (unbiased, always >= 0).
    """
    log_ratio = ref_logprobs - logprobs
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return log_ratio.exp() - 1.0 - log_ratio
    raise ValueError(f"kl estimator must be one of k1, k2, k3; got {kind!r}")


# ----------------------------------------------------------------------------------------------------------
# advantages and losses
# ----------------------------------------------------------------------------------------------------------
def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over padded responses.

    rewards, values, mask: [B, R]. Padding carries zero reward and zero value, so the value after the last
    real token is 0 (the episode ends there). Returns (advantages [B, R], returns = advantages + values),
    both zero on padding.
    """
    mask_f = mask.to(values.dtype)
    rewards, values = rewards * mask_f, values * mask_f
    last_gae = torch.zeros_like(values[:, 0])
    advantages_reversed = []
    for t in reversed(range(rewards.size(1))):
        next_value = values[:, t + 1] if t + 1 < rewards.size(1) else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = (delta + gamma * lam * last_gae) * mask_f[:, t]
        advantages_reversed.append(last_gae)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    return advantages, (advantages + values) * mask_f


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip surrogate: mean over real tokens of max(-A r, -A clip(r, 1-eps, 1+eps)), r = pi / pi_old.

    Returns (loss, stats) with stats clipfrac (share of tokens where the clipped term won), approxkl
    (0.5 * E[(log r)^2]) and ratio (mean r).
    """
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(pg_losses, pg_losses_clipped), mask)
    stats = {
        "clipfrac": masked_mean((pg_losses_clipped > pg_losses).float(), mask),
        "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
        "ratio": masked_mean(ratio, mask),
    }
    return loss, stats


def clipped_value_loss(
    vpred: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * mean over real tokens of max((v - R)^2, (v_clipped - R)^2), v_clipped within +-c of the old value."""
    vpred_clipped = old_values + torch.clamp(vpred - old_values, -cliprange_value, cliprange_value)
    losses = (vpred - returns) ** 2
    losses_clipped = (vpred_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(losses, losses_clipped), mask)
    return loss, {"clipfrac": masked_mean((losses_clipped > losses).float(), mask)}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var[R - V] / Var[R] over real tokens: 1 is a perfect critic, <= 0 no better than a constant."""
    var_returns = masked_var(returns, mask)
    return 1.0 - masked_var(returns - values, mask) / var_returns.clamp(min=1e-8)


# ----------------------------------------------------------------------------------------------------------
# KL coefficient
# ----------------------------------------------------------------------------------------------------------
class KLController:
    """beta for the KL penalty: fixed, or adaptive toward a target KL (Ziegler et al. 2019, Sec. 2.2).

    Adaptive: e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n_steps / horizon).
    """

    def __init__(self, init_beta: float, target: float | None = None, horizon: int = 10_000) -> None:
        self.value = float(init_beta)
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if self.target is None:
            return
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
