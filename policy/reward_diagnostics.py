"""Does the reward model rank the policy's *own* samples the way gold does?

A reward model is trained and evaluated on human-written pairs (upvoted comments), but PPO and best-of-n
only ever ask it to compare samples of the policy being optimized. Those differ from human text in ways
votes never show it (a small policy states many facts its post does not contain), so
held-out pair accuracy can be high while the on-policy ranking is near chance; then PPO and best-of-n
raise the reward and not the true quality. In the simulated world, gold scores every sample, so the
on-policy ranking can be measured directly:

    from policy.reward_diagnostics import implied_correlation, on_policy_agreement, within_prompt_correlation
    on_policy_agreement(rm_grid, gold_grid)       # [B, S] scores of S samples for each of B prompts
    within_prompt_correlation(rm_grid, feature)   # e.g. feature = number of hallucinated facts per sample
    implied_correlation(0.555)                    # -> 0.17: the share of gold's signal PPO and best-of-n get

Pairs are formed only within a prompt (that is what best-of-n and PPO's advantages compare), and the
interval is a bootstrap over prompts, since pairs that share a prompt are not independent.
"""

from __future__ import annotations

import numpy as np

from reward_model.calibration import pairwise_correct


def _check_grids(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must be [prompts, samples] grids of one shape; "
                         f"got {a.shape} and {b.shape}")
    return a, b


def on_policy_agreement(
    rm: np.ndarray, gold: np.ndarray, min_gold_gap: float = 0.02, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Share of within-prompt sample pairs whose reward order matches their gold order.

    Pairs whose gold differs by less than `min_gold_gap` are left out (gold cannot tell them apart either);
    a reward tie counts half. Returns accuracy, its 95% bootstrap interval over prompts, and the pair count.
    """
    rm, gold = _check_grids(rm, gold, ("rm", "gold"))
    n_samples = rm.shape[1]
    i, j = np.triu_indices(n_samples, k=1)
    d_gold = gold[:, i] - gold[:, j]  # [B, P]
    d_rm = rm[:, i] - rm[:, j]
    counted = np.abs(d_gold) >= min_gold_gap
    agree = pairwise_correct(d_rm * np.sign(d_gold), 0.0) * counted  # the project's rule: a tie counts half
    per_prompt_n = counted.sum(1)
    if per_prompt_n.sum() == 0:
        return {"pairs": 0.0}
    per_prompt_agree = agree.sum(1)
    boot = np.random.default_rng(seed).integers(0, rm.shape[0], size=(n_boot, rm.shape[0]))
    ratios = per_prompt_agree[boot].sum(1) / np.maximum(per_prompt_n[boot].sum(1), 1)
    accuracy, low, high = per_prompt_agree.sum() / per_prompt_n.sum(), np.percentile(ratios, 2.5), np.percentile(ratios, 97.5)
    return {
        "accuracy": float(accuracy),
        "accuracy_ci_low": float(low),
        "accuracy_ci_high": float(high),
        "pairs": float(per_prompt_n.sum()),
        # monotone in the accuracy, so the interval maps over
        "implied_rho": implied_correlation(accuracy),
        "implied_rho_ci_low": implied_correlation(low),
        "implied_rho_ci_high": implied_correlation(high),
    }


def implied_correlation(agreement: float) -> float:
    """The correlation rho of jointly normal scores that order pairs alike with probability `agreement`
    (Kendall's tau = 2 agreement - 1 = (2 / pi) arcsin rho).

    Why it matters: for such scores, best-of-n picked by the reward model gains rho times what best-of-n
    picked by gold gains, and a small policy step along the reward model's gradient gains, roughly and to
    first order, rho times what the same step along gold's would. Agreement 0.555 sounds like "above chance"; rho 0.17
    says how little of gold's within-prompt signal that passes on. A rank measure on purpose: a pooled
    Pearson correlation is dominated by the few broken samples both scores put last."""
    return float(np.sin(np.pi * (float(agreement) - 0.5)))


def within_prompt_correlation(score: np.ndarray, feature: np.ndarray) -> float:
    """Mean over prompts of the Pearson correlation between `score` and `feature` across that prompt's samples
    (prompts where either is constant are skipped; NaN when none is left)."""
    score, feature = _check_grids(score, feature, ("score", "feature"))
    s = score - score.mean(1, keepdims=True)
    f = feature - feature.mean(1, keepdims=True)
    denom = np.sqrt((s**2).sum(1) * (f**2).sum(1))
    ok = denom > 1e-12
    return float(((s * f).sum(1)[ok] / denom[ok]).mean()) if ok.any() else float("nan")
