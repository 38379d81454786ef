"""Held-out evaluation of a reward model on preference pairs, with baselines, CIs and calibration.

    python -m pipelines eval-reward --config configs/demo.yaml        # the stage that calls this module
    from reward_model.evaluate import evaluate_reward_model
    result = evaluate_reward_model(scorer, pairs["test"], out_dir="runs/demo/eval-reward",
                                   gold_fn=gold_score, win_prob_fn=win_probs)
    result.metrics["rm/accuracy"], result.tables["by_ratio"]

Steps:
1. Score chosen and rejected with the scorer (the same `RewardScorer.score` PPO calls).
2. Pairwise accuracy (ties count 1/2) overall and by score-ratio bucket, subreddit and strategy, each with a
   95% Wilson interval and, in the same row, the baselines: longer-wins (more words), later-wins (posted
   later) and random (a seeded coin).
3. Calibration: P(chosen) = sigmoid(r_c - r_r) against observed frequency, ECE, reliability PNG.
4. With a gold function (the simulated world): accuracy against gold labels, and how often the observed
   label agrees with gold. With the simulator's win probabilities p (P(chosen wins | texts, selection
   rule) per pair): the Bayes ceiling mean(max(p, 1-p)), the model's expected accuracy mean(p or 1-p,
   by its pick), and their paired gap with a bootstrap CI. Both average over the vote noise, so the gap
   is judged on the same pairs without the realized labels' noise (a +-5 point Wilson CI on 300 pairs
   shrinks to about +-1.5). `reference_fns` (text scorers such as the simulator's gold rule with parts
   removed) get the same expected accuracy, so the model is placed between predictors of known ability.
5. Pairs with strategy "human": agreement with human labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from datasets import Dataset

from reward_model.calibration import bootstrap_means, pairwise_correct, plot_reliability, reliability, wilson_interval

ScoreFn = Callable[[list[str], list[str]], "object"]  # (prompts, responses) -> tensor/array [batch]
GoldFn = Callable[[str, str], float]  # (post_text, summary) -> hidden quality
# pairs -> per pair P(chosen has the higher observed score | texts, selection rule), NaN where unknown
WinProbFn = Callable[[Dataset], np.ndarray]

RATIO_BUCKETS: list[tuple[str, float, float]] = [
    ("<2", 1.0, 2.0),
    ("2-3", 2.0, 3.0),
    ("3-5", 3.0, 5.0),
    ("5-10", 5.0, 10.0),
    (">10", 10.0, math.inf),
]
REQUIRED = ("prompt", "chosen", "rejected")


@dataclass
class RewardEvalResult:
    """Metrics (namespaced `rm/...`), table rows by name, the reliability plot and per-pair scores."""

    metrics: dict[str, float]
    tables: dict[str, list[dict]]
    plot_path: Path | None
    rewards_chosen: np.ndarray = field(repr=False)
    rewards_rejected: np.ndarray = field(repr=False)


def ratio_bucket(ratio: float) -> str:
    for name, lo, hi in RATIO_BUCKETS:
        if lo <= ratio < hi:
            return name
    return RATIO_BUCKETS[0][0]


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def _score(scorer, prompts: list[str], responses: list[str]) -> np.ndarray:
    fn = scorer.score if hasattr(scorer, "score") else scorer
    out = _as_numpy(fn(prompts, responses))
    if out.shape != (len(prompts),):
        raise ValueError(f"scorer returned shape {out.shape}; expected [{len(prompts)}]")
    return out


def _row(group: str, value: str, mask: np.ndarray, correct: dict[str, np.ndarray]) -> dict:
    n = int(mask.sum())
    acc = float(correct["rm"][mask].mean()) if n else float("nan")
    lo, hi = wilson_interval(float(correct["rm"][mask].sum()), n)
    row = {"group": group, "value": value, "n": n, "accuracy": acc, "ci_low": lo, "ci_high": hi}
    for name in ("longer_wins", "later_wins", "random"):
        row[name] = float(correct[name][mask].mean()) if n else float("nan")
    return row


def _group_rows(group: str, labels: list[str], correct: dict[str, np.ndarray], order: list[str] | None = None):
    labels_arr = np.asarray(labels)
    values = order or sorted(set(labels))
    return [_row(group, v, labels_arr == v, correct) for v in values if (labels_arr == v).any()]


def oracle_gap(p: np.ndarray, r_c: np.ndarray, r_r: np.ndarray, seed: int = 0, n_boot: int = 2000) -> dict[str, float]:
    """Expected accuracy of the model's picks vs the Bayes ceiling on the pairs with a known p (not NaN).

    p[i] = P(chosen side wins | texts, rule). The model picks the chosen side when r_c > r_r (half on ties);
    its expected accuracy on pair i is p or 1-p by that pick; the ceiling's is max(p, 1-p). The per-pair
    gap is |2p-1| where the pick differs from the Bayes pick and 0 elsewhere, so its mean is >= 0.
    """
    if p.shape != r_c.shape:
        raise ValueError(f"win probabilities have shape {p.shape}; expected one per pair {r_c.shape}")
    known = ~np.isnan(p)
    if not known.any():
        return {}
    p, pick = p[known], pairwise_correct(r_c, r_r)[known]  # pick: 1 chosen, 0 rejected, 0.5 tie
    expected = pick * p + (1 - pick) * (1 - p)
    gap = np.maximum(p, 1 - p) - expected
    means = bootstrap_means(gap, n_boot, seed)
    return {
        "rm/oracle/n_pairs": float(len(p)),
        "rm/bayes_ceiling": float(np.maximum(p, 1 - p).mean()),
        "rm/expected_accuracy": float(expected.mean()),
        "rm/gap_to_ceiling": float(gap.mean()),
        "rm/gap_to_ceiling_ci_low": float(np.percentile(means, 2.5)),
        "rm/gap_to_ceiling_ci_high": float(np.percentile(means, 97.5)),
        "rm/bayes_disagreement": float((gap > 0).mean()),
    }


def _reference_rows(pairs: Dataset, p: np.ndarray, reference_fns: dict[str, GoldFn], metrics: dict[str, float],
                    seed: int) -> list[dict]:
    """The reward model beside text scorers of known ability on the same pairs and the same oracle scale."""
    post_c = list(pairs["post_text"])
    post_r = list(pairs["rejected_post_text"]) if "rejected_post_text" in pairs.column_names else post_c
    chosen, rejected = list(pairs["chosen"]), list(pairs["rejected"])

    def row(name: str, m: dict[str, float]) -> dict:
        return {"predictor": name, "expected_accuracy": m["rm/expected_accuracy"], "gap_to_ceiling": m["rm/gap_to_ceiling"],
                "ci_low": m["rm/gap_to_ceiling_ci_low"], "ci_high": m["rm/gap_to_ceiling_ci_high"]}

    rows = [row("reward model", metrics)]
    for name, fn in reference_fns.items():
        s_c = np.array([fn(a, b) for a, b in zip(post_c, chosen)])
        s_r = np.array([fn(a, b) for a, b in zip(post_r, rejected)])
        rows.append(row(name, oracle_gap(p, s_c, s_r, seed)))
    return rows


def evaluate_reward_model(
    scorer,
    pairs: Dataset,
    out_dir: str | Path | None = None,
    gold_fn: GoldFn | None = None,
    win_prob_fn: WinProbFn | None = None,
    reference_fns: dict[str, GoldFn] | None = None,
    n_bins: int = 10,
    seed: int = 0,
    n_examples: int = 8,
) -> RewardEvalResult:
    """Evaluate `scorer` (a `RewardScorer` or any `(prompts, responses) -> [batch]`) on held-out `pairs`.

    `pairs` follows the pair schema (docs/architecture.md); cross_post pairs (a `rejected_prompt` column)
    are scored with each side's own prompt. Writes `reliability.png` to `out_dir` when given.
    """
    missing = [c for c in REQUIRED if c not in pairs.column_names]
    if missing:
        raise ValueError(f"pairs lack column(s) {missing}; expected the pair schema (has {pairs.column_names})")
    if len(pairs) == 0:
        raise ValueError("evaluate_reward_model got an empty pairs split")
    n = len(pairs)
    cols = set(pairs.column_names)
    col = lambda name: list(pairs[name])  # noqa: E731  (datasets returns lazy Column objects)

    # 1. Scores.
    prompts = col("prompt")
    rejected_prompts = col("rejected_prompt") if "rejected_prompt" in cols else prompts
    chosen, rejected = col("chosen"), col("rejected")
    r_c = _score(scorer, prompts, chosen)  # [N]
    r_r = _score(scorer, rejected_prompts, rejected)  # [N]

    # 2. Correctness of the RM and of each baseline, per pair: 1 / 0 / 0.5 on ties.
    words_c = np.array([len(t.split()) for t in chosen], float)
    words_r = np.array([len(t.split()) for t in rejected], float)
    rng = np.random.default_rng(seed)
    correct = {
        "rm": pairwise_correct(r_c, r_r),
        "longer_wins": pairwise_correct(words_c, words_r),
        "random": rng.integers(0, 2, size=n).astype(float),
    }
    if {"chosen_created_utc", "rejected_created_utc"} <= cols:
        correct["later_wins"] = pairwise_correct(col("chosen_created_utc"), col("rejected_created_utc"))
    else:
        correct["later_wins"] = np.full(n, np.nan)

    everything = np.ones(n, bool)
    tables: dict[str, list[dict]] = {"overall": [_row("overall", "all", everything, correct)]}
    if "score_ratio" in cols:
        buckets = [ratio_bucket(r) for r in col("score_ratio")]
        tables["by_ratio"] = _group_rows("score_ratio", buckets, correct, [b[0] for b in RATIO_BUCKETS])
    if "subreddit" in cols:
        tables["by_subreddit"] = _group_rows("subreddit", col("subreddit"), correct)
    if "strategy" in cols:
        tables["by_strategy"] = _group_rows("strategy", col("strategy"), correct)

    overall = tables["overall"][0]
    metrics: dict[str, float] = {
        "rm/n_pairs": float(n),
        "rm/accuracy": overall["accuracy"],
        "rm/accuracy_ci_low": overall["ci_low"],
        "rm/accuracy_ci_high": overall["ci_high"],
        "rm/baseline/longer_wins": overall["longer_wins"],
        "rm/baseline/later_wins": overall["later_wins"],
        "rm/baseline/random": overall["random"],
        "rm/reward/chosen_mean": float(r_c.mean()),
        "rm/reward/rejected_mean": float(r_r.mean()),
        "rm/reward/std": float(np.concatenate([r_c, r_r]).std()),
        "rm/reward/margin_mean": float((r_c - r_r).mean()),
    }
    for name in ("by_ratio", "by_subreddit", "by_strategy"):
        for row in tables.get(name, []):
            metrics[f"rm/accuracy/{row['group']}/{row['value']}"] = row["accuracy"]

    # 3. Calibration of sigmoid(r_c - r_r).
    p_chosen = 1.0 / (1.0 + np.exp(-(r_c - r_r)))  # [N]
    rel = reliability(p_chosen, n_bins)
    tables["calibration"] = rel.rows()
    metrics["rm/ece"] = rel.ece
    metrics["rm/mean_confidence"] = float(np.maximum(p_chosen, 1 - p_chosen).mean())
    plot_path = plot_reliability(rel, Path(out_dir) / "reliability.png") if out_dir is not None else None

    # 4. Gold labels and the Bayes ceiling (simulated world only).
    if gold_fn is not None:
        if "post_text" not in cols:
            raise ValueError("gold evaluation needs the pairs' `post_text` column")
        post_c = col("post_text")
        post_r = col("rejected_post_text") if "rejected_post_text" in cols else post_c
        g_c = np.array([gold_fn(p, s) for p, s in zip(post_c, chosen)])
        g_r = np.array([gold_fn(p, s) for p, s in zip(post_r, rejected)])
        decided = g_c != g_r
        gold_chosen_better = g_c > g_r
        rm_chosen_better = r_c > r_r
        n_dec = int(decided.sum())
        agree = (rm_chosen_better == gold_chosen_better)[decided]
        lo, hi = wilson_interval(float(agree.sum()), n_dec)
        metrics.update(
            {
                "rm/gold/accuracy": float(agree.mean()) if n_dec else float("nan"),
                "rm/gold/accuracy_ci_low": lo,
                "rm/gold/accuracy_ci_high": hi,
                "rm/gold/label_agreement": float(gold_chosen_better[decided].mean()) if n_dec else float("nan"),
                "rm/gold/n_decided": float(n_dec),
                "rm/gold/reward_corr": float(np.corrcoef(np.r_[r_c, r_r], np.r_[g_c, g_r])[0, 1]),
            }
        )
    if win_prob_fn is not None:
        p_win = np.asarray(win_prob_fn(pairs), float)
        metrics.update(oracle_gap(p_win, r_c, r_r, seed))
        if reference_fns and "rm/expected_accuracy" in metrics:
            tables["reference_predictors"] = _reference_rows(pairs, p_win, reference_fns, metrics, seed)
            for row in tables["reference_predictors"]:
                metrics[f"rm/reference/{row['predictor']}/expected_accuracy"] = row["expected_accuracy"]
                metrics[f"rm/reference/{row['predictor']}/gap_to_ceiling"] = row["gap_to_ceiling"]

    # 5. Human labels.
    if "strategy" in cols:
        human = np.asarray(col("strategy")) == "human"
        if human.any():
            metrics["rm/human_agreement"] = float(correct["rm"][human].mean())
            metrics["rm/human_n"] = float(human.sum())

    # A few of the most confident mistakes, for a W&B table.
    wrong = np.argsort(-(r_r - r_c))[: min(n_examples, n)]
    tables["confident_errors"] = [
        {
            "prompt_tail": prompts[i][-200:],
            "chosen": chosen[i],
            "rejected": rejected[i],
            "r_chosen": float(r_c[i]),
            "r_rejected": float(r_r[i]),
        }
        for i in wrong
        if r_r[i] > r_c[i]
    ]
    return RewardEvalResult(metrics, tables, plot_path, r_c, r_r)


def weak_reward_reasons(metrics: Mapping[str, Any]) -> list[str]:
    """Why a held-out evaluation (`rm/...` metrics of `evaluate_reward_model`) says the reward model has not
    learned the votes; empty when it has, or when there is no evaluation to judge.

    Two rules, each named with its numbers:
    - below random: the 95% CI's upper end is under 0.5, i.e. it prefers the side the votes did NOT prefer;
    - below a text-only baseline: its accuracy is under longer-wins (counting words) on the same pairs, so a
      policy optimized against it is steered by something worse than the response's length.
    Why it matters: a reward model that is anti-correlated with or blind to the votes still has a healthy
    calibration error (all its confidences sit near 0.5), and PPO happily optimizes it.
    """
    acc, hi, lo = (metrics.get(k) for k in ("rm/accuracy", "rm/accuracy_ci_high", "rm/accuracy_ci_low"))
    if not _is_number(acc):
        return []
    reasons = []
    if _is_number(hi) and hi < 0.5:
        reasons.append("below random (the whole 95% CI under 0.5: it prefers the side the votes did not)")
    longer = metrics.get("rm/baseline/longer_wins")
    if _is_number(longer) and acc < longer:
        reasons.append(f"below the text-only baseline longer-wins ({longer:.3f} on the same pairs)")
    return reasons


def weak_reward_warning(metrics: Mapping[str, Any]) -> str | None:
    """The one-line warning train-reward, eval-reward and the report print for a weak reward model, or None."""
    reasons = weak_reward_reasons(metrics)
    if not reasons:
        return None
    return f"WARNING: the reward model has not learned the votes ({held_out_summary(metrics)}): " + \
        "; ".join(reasons) + ". PPO refuses to start from it unless ppo.allow_weak_reward=true."


def held_out_summary(metrics: Mapping[str, Any]) -> str:
    """'accuracy 0.430 [0.381, 0.480] on 379 held-out pairs' from `rm/...` metrics."""
    acc, lo, hi, n = (metrics.get(k) for k in ("rm/accuracy", "rm/accuracy_ci_low", "rm/accuracy_ci_high", "rm/n_pairs"))
    ci = f" [{lo:.3f}, {hi:.3f}]" if _is_number(lo) and _is_number(hi) else ""
    where = f"{int(n)} held-out pairs" if _is_number(n) else "its held-out pairs"
    return f"accuracy {acc:.3f}{ci} on {where}"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows as a fixed-width text table for the terminal (numbers to 3 decimals)."""
    if not rows:
        return "(empty)"
    columns = columns or list(rows[0].keys())
    cells = [[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])
