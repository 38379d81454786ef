"""RM evaluation: Wilson CIs, ratio buckets, baselines, calibration/ECE, gold and Bayes, human agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from reward_model.calibration import pairwise_correct, reliability, wilson_interval
from reward_model.evaluate import oracle_gap, evaluate_reward_model, format_table, ratio_bucket


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4901, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2  # never a zero-width interval at 0
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_ratio_buckets_and_ties():
    assert [ratio_bucket(r) for r in (1.5, 2.0, 2.99, 3.0, 5.0, 9.9, 10.0, 400.0)] == [
        "<2", "2-3", "2-3", "3-5", "5-10", "5-10", ">10", ">10"
    ]
    assert pairwise_correct(np.array([1.0, 0.0, 2.0]), np.array([0.0, 1.0, 2.0])).tolist() == [1.0, 0.0, 0.5]


def test_reliability_and_ece():
    # 80% confident and right 80% of the time: calibrated.
    p = np.array([0.8] * 8 + [0.2] * 2)  # folded: all at confidence 0.8; 8 right, 2 wrong
    rel = reliability(p)
    assert rel.ece == pytest.approx(0.0, abs=1e-9)
    assert rel.rows()[0]["n"] == 10 and rel.rows()[0]["accuracy"] == pytest.approx(0.8)
    # 99% confident, right half of the time: ECE ~ 0.49.
    overconfident = reliability(np.array([0.99] * 5 + [0.01] * 5))
    assert overconfident.ece == pytest.approx(0.49, abs=1e-6)


def _pairs(n: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        good_wins = i % 4 != 0  # 75% of labels follow "good" words
        good, bad = " good " * int(rng.integers(1, 4)), " bad " * int(rng.integers(1, 6))
        rows.append({
            "pair_id": str(i), "post_id": f"p{i}", "subreddit": "a" if i % 2 else "b",
            "strategy": "human" if i < 8 else "same_post",
            "prompt": f"post {i} TL;DR:", "chosen": good if good_wins else bad, "rejected": bad if good_wins else good,
            "chosen_score": 10, "rejected_score": 3, "score_ratio": [2.5, 4.0, 7.0, 20.0][i % 4], "margin": 0.0,
            "chosen_created_utc": float(i % 3), "rejected_created_utc": 1.0, "post_text": f"post {i}",
        })
    return Dataset.from_list(rows)


def _oracle_p(pairs: Dataset) -> np.ndarray:
    """Simulator-like win probabilities: 0.9 where the chosen text is the good one, 0.4 where not, NaN for human."""
    return np.array([np.nan if s == "human" else (0.9 if "good" in c.split() else 0.4)
                     for s, c in zip(pairs["strategy"], pairs["chosen"])])


def count_good(prompts: list[str], responses: list[str]) -> torch.Tensor:
    """A transparent RewardFn: number of 'good' minus number of 'bad' words."""
    return torch.tensor([r.split().count("good") - r.split().count("bad") for r in responses], dtype=torch.float32)


def test_evaluate_tables_baselines_gold_and_plot(tmp_path):
    pairs = _pairs()
    gold = lambda post, summary: float(summary.split().count("good"))  # noqa: E731
    result = evaluate_reward_model(count_good, pairs, out_dir=tmp_path, gold_fn=gold, win_prob_fn=_oracle_p,
                                   reference_fns={"contrarian": lambda post, summary: -gold(post, summary)})
    m = result.metrics
    assert m["rm/accuracy"] == pytest.approx(0.75)  # right exactly where labels follow "good"
    assert m["rm/accuracy_ci_low"] < 0.75 < m["rm/accuracy_ci_high"]
    assert m["rm/gold/accuracy"] == pytest.approx(1.0)  # the RM agrees with gold on every decided pair
    assert m["rm/gold/label_agreement"] == pytest.approx(0.75)
    # Oracle: p = 0.9 where "good" is chosen (a pair the model gets right), 0.4 elsewhere; human pairs unknown.
    p = _oracle_p(pairs)
    known = ~np.isnan(p)
    assert m["rm/oracle/n_pairs"] == known.sum() == 32
    assert m["rm/bayes_ceiling"] == pytest.approx(np.maximum(p, 1 - p)[known].mean())
    # The model picks "good": right (p) on p=0.9 pairs, and on p=0.4 pairs it picks the rejected side (0.6).
    assert m["rm/expected_accuracy"] == pytest.approx(m["rm/bayes_ceiling"])
    assert m["rm/gap_to_ceiling"] == pytest.approx(0.0) and m["rm/bayes_disagreement"] == 0.0
    # Reference scorers land on the same scale: one that prefers the "bad" text is as far below as can be.
    refs = {r["predictor"]: r for r in result.tables["reference_predictors"]}
    assert refs["reward model"]["expected_accuracy"] == pytest.approx(m["rm/expected_accuracy"])
    assert refs["contrarian"]["expected_accuracy"] == pytest.approx(1 - m["rm/bayes_ceiling"])
    assert m["rm/reference/contrarian/gap_to_ceiling"] == pytest.approx(2 * m["rm/bayes_ceiling"] - 1)
    # later-wins: chosen time i % 3 vs rejected time 1 -> wins at 2, ties at 1 (half), loses at 0.
    expected_later = np.mean([{0: 0.0, 1: 0.5, 2: 1.0}[i % 3] for i in range(40)])
    assert m["rm/baseline/later_wins"] == pytest.approx(expected_later)
    # longer-wins: the side with more words wins, ties count half; random: one fair coin per pair, seeded.
    n_words = lambda text: len(text.split())  # noqa: E731
    expected_longer = np.mean([1.0 if n_words(c) > n_words(r) else 0.5 if n_words(c) == n_words(r) else 0.0
                               for c, r in zip(pairs["chosen"], pairs["rejected"])])
    assert expected_longer != pytest.approx(0.5)  # the data can tell "longer wins" from its reverse
    assert m["rm/baseline/longer_wins"] == pytest.approx(expected_longer)
    assert m["rm/baseline/random"] == pytest.approx(np.random.default_rng(0).integers(0, 2, size=40).mean())
    assert m["rm/human_n"] == 8 and m["rm/human_agreement"] == pytest.approx(0.75)
    # Bucket rows: every ratio bucket of the data, each with its baselines beside the RM.
    buckets = {r["value"]: r for r in result.tables["by_ratio"]}
    assert set(buckets) == {"2-3", "3-5", "5-10", ">10"}
    assert buckets["2-3"]["accuracy"] == 0.0 and buckets["3-5"]["accuracy"] == 1.0  # i % 4 == 0 is the flipped set
    assert {"longer_wins", "later_wins", "random", "ci_low", "ci_high"} <= set(buckets["3-5"])
    assert {r["value"] for r in result.tables["by_subreddit"]} == {"a", "b"}
    assert {r["value"] for r in result.tables["by_strategy"]} == {"human", "same_post"}
    assert m["rm/accuracy/strategy/same_post"] == pytest.approx(0.75)
    assert result.plot_path is not None and result.plot_path.stat().st_size > 1000
    assert sum(r["n"] for r in result.tables["calibration"]) == 40
    assert len(result.tables["confident_errors"]) > 0
    assert "accuracy" in format_table(result.tables["by_ratio"])


def test_cross_post_pairs_use_each_sides_prompt():
    pairs = _pairs(4).add_column("rejected_prompt", ["OTHER"] * 4)
    seen: list[list[str]] = []

    def record(prompts, responses):
        seen.append(list(prompts))
        return torch.zeros(len(prompts))

    evaluate_reward_model(record, pairs)
    assert seen[1] == ["OTHER"] * 4 and seen[0] != seen[1]


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="chosen"):
        evaluate_reward_model(count_good, Dataset.from_dict({"prompt": ["a"]}))
    with pytest.raises(ValueError, match="shape"):
        evaluate_reward_model(lambda p, r: torch.zeros(len(p) + 1), _pairs(4))


def test_oracle_gap_counts_only_pairs_where_the_pick_differs_from_bayes():
    """Per pair the gap is |2p - 1| when the model picks against the Bayes decision, else 0; ties cost half."""
    p = np.array([0.8, 0.8, 0.3, 0.5, np.nan])
    r_c = np.array([1.0, 0.0, 0.0, 2.0, 5.0])
    r_r = np.array([0.0, 1.0, 1.0, 1.0, 0.0])
    m = oracle_gap(p, r_c, r_r)
    # picks: chosen (agrees), rejected (disagrees: 0.6), rejected (agrees with p=0.3), chosen at p=0.5 (0 gap)
    assert m["rm/oracle/n_pairs"] == 4
    assert m["rm/gap_to_ceiling"] == pytest.approx(0.6 / 4)
    assert m["rm/expected_accuracy"] == pytest.approx((0.8 + 0.2 + 0.7 + 0.5) / 4)
    assert m["rm/gap_to_ceiling_ci_low"] <= m["rm/gap_to_ceiling"] <= m["rm/gap_to_ceiling_ci_high"]
    tie = oracle_gap(np.array([0.9]), np.array([1.0]), np.array([1.0]))
    assert tie["rm/gap_to_ceiling"] == pytest.approx(0.4)  # a tie is right half the time: 0.5 vs 0.9
    with pytest.raises(ValueError, match="one per pair"):
        oracle_gap(np.array([0.5]), r_c, r_r)
