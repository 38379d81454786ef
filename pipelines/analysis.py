"""What eval-policy, the ppo stage's gold control and the benchmarks measure about policies on held-out prompts.

    held = load_held_out(Path("runs/demo/build-data"), cfg.eval_policy, scorer, with_gold=True)
    check = on_policy_reward_check(sft_pool, held)       # does the reward model order the policy's samples as gold?
    vs_sft = compare_with_sft(per_prompt, seed=0)        # paired gains of every method over SFT

A library beside the stages (`pipelines/stages/ppo.py`, `eval_policy.py`) that `bench/` imports too. It lives
in `pipelines/` because its gold parts come from the simulated world (`data.sim.gold`); the generic pieces
(sampling, scoring, win rates, paired gains) are `policy.evaluate` and `policy.reward_diagnostics`.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import torch

from data.sim.gold import gold_components, gold_score
from policy.evaluate import EvalPolicyConfig, HeldOut, Responses, paired_gain, weighted_per_prompt
from policy.reward_diagnostics import on_policy_agreement, within_prompt_correlation
from reward_model.scoring import RewardScorer


def batch_gold(post_texts: list[str], responses: list[str]) -> torch.Tensor:
    """`gold_score` as a RewardFn over a batch: [batch]."""
    return torch.tensor([gold_score(p, r) for p, r in zip(post_texts, responses)], dtype=torch.float32)


def gold_on_reward_scale(scorer: RewardScorer, rows: datasets.Dataset, n: int = 256, seed: int = 0) -> tuple[float, float]:
    """(shift, scale) that put gold on the reward model's scale: over up to `n` reference TL;DRs of `rows`,
    (gold - shift) * scale has the reward model's mean and standard deviation there."""
    rows = rows.shuffle(seed=seed).select(range(min(n, len(rows))))
    rm = scorer.score(list(rows["prompt"]), list(rows["completion"])).double().numpy()
    gold = np.array([gold_score(p, c) for p, c in zip(rows["post_text"], rows["completion"])])
    if gold.std() == 0:
        raise ValueError("gold has no spread over the reference TL;DRs: cannot match the reward model's scale")
    scale = float(rm.std() / gold.std())
    return float(gold.mean() - rm.mean() / scale), scale


def scaled_gold_reward(choice: str | float, scorer: RewardScorer, rows: datasets.Dataset, seed: int = 0):
    """Gold as a PPO reward on the scale `rl.gold_control_scale` names: (reward_fn, shift, scale), the reward
    being (gold - shift) * scale."""
    shift, scale = gold_on_reward_scale(scorer, rows, seed=seed) if choice == "reward_model" else (0.0, float(choice))

    def reward(prompts: list[str], responses: list[str]) -> torch.Tensor:
        return (batch_gold(prompts, responses) - shift) * scale

    return reward, shift, scale


def load_held_out(data_dir: Path, ecfg: EvalPolicyConfig, scorer: RewardScorer, with_gold: bool) -> HeldOut:
    """The evaluated prompts: up to `max_prompts` rows of the SFT split in `data_dir/sft`, a seeded choice;
    references scored by the reward model (and by gold in the simulated world)."""
    splits = datasets.load_from_disk(str(data_dir / "sft"))
    if ecfg.split not in splits:
        raise ValueError(f"eval_policy.split={ecfg.split!r}: build-data/sft has splits {list(splits)}")
    rows = splits[ecfg.split]
    if len(rows) == 0:
        raise ValueError(f"eval_policy.split={ecfg.split!r} of build-data/sft is empty: nothing to evaluate")
    rows = rows.shuffle(seed=ecfg.seed).select(range(min(ecfg.max_prompts, len(rows))))
    prompts, posts, refs = list(rows["prompt"]), list(rows["post_text"]), list(rows["completion"])
    ref_gold = np.array([gold_score(p, r) for p, r in zip(posts, refs)]) if with_gold else None
    return HeldOut(prompts, posts, refs, scorer.score(prompts, refs).double().numpy(), ref_gold)


# Gold's parts whose within-prompt correlation with the reward says what the reward model rewards on-policy.
ON_POLICY_FEATURES = ("coverage", "precision", "n_hallucinated", "n_summary_facts", "n_words")


def gold_part_grids(res: Responses, held: HeldOut) -> dict[str, np.ndarray]:
    """[B, S] grid of each of gold's parts (`ON_POLICY_FEATURES`) over the responses (simulated world)."""
    rows = [i for i in range(len(held)) for _ in range(res.per_prompt)]
    parts = [gold_components(held.post_texts[i], t) for i, t in zip(rows, res.texts)]
    return {f: res.grid(np.array([c[f] for c in parts], float)) for f in ON_POLICY_FEATURES}


def on_policy_reward_check(pool: Responses, held: HeldOut) -> dict:
    """Simulated world: how the reward model orders the SFT policy's own samples (the only texts PPO and
    best-of-n ask it about) compared with gold, and which parts of gold its score follows within a prompt."""
    rm, gold = pool.grid(pool.rm), pool.grid(pool.gold)
    features = gold_part_grids(pool, held)
    return {
        "samples_per_prompt": pool.per_prompt,
        "agreement": on_policy_agreement(rm, gold),
        "corr_rm": {f: within_prompt_correlation(rm, v) for f, v in features.items()},
        "corr_gold": {f: within_prompt_correlation(gold, v) for f, v in features.items()},
        "mean": {f: float(v.mean()) for f, v in features.items()},
    }


def gold_parts(res: Responses, held: HeldOut, weights: np.ndarray | None = None) -> dict[str, float]:
    """Simulated world: the mean of each of gold's parts (`ON_POLICY_FEATURES`) over a method's responses,
    weighted like its gold (best-of-n weights its pool): what the method changes in the text, not just how
    much gold it gets."""
    return {f: float(weighted_per_prompt(grid, weights).mean()) for f, grid in gold_part_grids(res, held).items()}


def compare_with_sft(per_prompt: dict[str, dict[str, np.ndarray]], seed: int) -> dict[str, dict]:
    """Every method against SFT on the same held-out prompts: paired gain in gold win rate (against the
    reference TL;DR) and in gold, with bootstrap intervals (`policy.evaluate.paired_gain`)."""
    base = per_prompt.get("SFT")
    if base is None:
        return {}
    return {method: {key: paired_gain(values[key], base[key], seed=seed) for key in ("gold_win", "gold")}
            for method, values in per_prompt.items() if method != "SFT"}


def format_vs_sft(vs_sft: dict[str, dict]) -> str:
    """`compare_with_sft`'s result as a plain-text table, one method a line."""
    lines = [f"{'method':<28} {'gold win - SFT':>26} {'P(<=0)':>7} {'gold - SFT':>26}"]
    for method, d in vs_sft.items():
        w, g = d["gold_win"], d["gold"]
        lines.append(f"{method:<28} {w['mean']:>+8.3f} [{w['lo']:+.3f}, {w['hi']:+.3f}] {w['p_not_above']:>7.3f} "
                     f"{g['mean']:>+8.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}]")
    return "\n".join(lines)
