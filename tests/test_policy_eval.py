"""Metrics of policy/evaluate.py on hand-made numbers: win rate + CI, KL estimate, best-of-n weights, rows."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from policy.best_of_n import analytic_kl
from policy.evaluate import (
    ROW_KEYS,
    EvalPolicyConfig,
    HeldOut,
    Responses,
    best_of_n_rows,
    best_of_n_selection,
    best_of_n_weights,
    kl_estimate,
    make_row,
    paired_gain,
    per_prompt_gold,
    rouge_l,
    slug,
    win_rate,
)
from policy.plots import plot_gold_vs_sqrt_kl, plot_proxy_vs_gold, ppo_curve


def test_win_rate_counts_ties_as_half_and_gives_a_wilson_ci() -> None:
    rate, (lo, hi) = win_rate(np.array([1.0, 2.0, 3.0, 0.0]), np.array([0.0, 2.0, 4.0, -1.0]))
    assert rate == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert lo < rate < hi
    # 80 wins out of 100 prompts: the textbook Wilson interval [0.711, 0.867].
    rate, (lo, hi) = win_rate(np.r_[np.ones(80), np.zeros(20)], np.full(100, 0.5))
    assert rate == pytest.approx(0.8)
    assert (lo, hi) == pytest.approx((0.7112, 0.8666), abs=1e-3)
    # More prompts, same rate: a narrower interval.
    _, (lo2, hi2) = win_rate(np.r_[np.ones(800), np.zeros(200)], np.full(1000, 0.5))
    assert hi2 - lo2 < (hi - lo) / 2


def test_win_rate_with_several_samples_and_weights() -> None:
    scores = np.array([[1.0, -1.0], [1.0, 1.0]])  # [B=2, S=2]
    ref = np.zeros(2)
    assert win_rate(scores, ref)[0] == pytest.approx(0.75)  # prompt 0 wins half its samples
    weights = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert win_rate(scores, ref, weights)[0] == pytest.approx(1.0)


def test_kl_estimate_is_the_mean_log_ratio_and_recovers_a_known_kl() -> None:
    assert kl_estimate(np.array([-1.0, -2.0]), np.array([-1.5, -4.0])) == pytest.approx((0.5 + 2.0) / 2)
    # Sampling from p = Bernoulli(0.8) with q = Bernoulli(0.5): KL = 0.8 ln 1.6 + 0.2 ln 0.4.
    rng = np.random.default_rng(0)
    x = rng.random(200_000) < 0.8
    logp = np.where(x, math.log(0.8), math.log(0.2))
    logq = np.full(x.shape, math.log(0.5))
    exact = 0.8 * math.log(1.6) + 0.2 * math.log(0.4)
    assert kl_estimate(logp, logq) == pytest.approx(exact, abs=5e-3)
    assert kl_estimate(logp, logp) == 0.0


def test_best_of_n_weights_match_enumeration_of_subsets() -> None:
    scores = np.array([[0.3, -1.0, 2.0, 0.5, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])  # [B=2, S=5]
    for n in range(1, 6):
        w = best_of_n_weights(scores, n)
        assert w.shape == scores.shape and np.allclose(w.sum(1), 1.0)
        for b in range(2):  # brute force: every n-subset equally likely, its argmax kept
            counts = np.zeros(5)
            subsets = list(itertools.combinations(range(5), n))
            for sub in subsets:
                counts[max(sub, key=lambda j: scores[b, j])] += 1
            assert np.allclose(w[b], counts / len(subsets)), (n, b)
    assert np.allclose(best_of_n_weights(scores, 1), 0.2)  # n=1: plain sampling
    assert best_of_n_weights(scores, 5)[0].tolist() == [0, 0, 1, 0, 0]  # n=S: the argmax
    with pytest.raises(ValueError, match="pool size"):
        best_of_n_weights(scores, 6)


def _responses(rm, gold, texts=None, per_prompt=2, has_eos=None) -> Responses:
    n = len(rm)
    res = Responses(texts or ["x"] * n, np.full(n, 5.0), np.ones(n, bool) if has_eos is None else np.asarray(has_eos),
                    np.zeros(n), np.zeros(n), 10.0, per_prompt)
    res.rm, res.gold, res.rouge = np.asarray(rm, float), np.asarray(gold, float), np.full(n, 0.25)
    return res


def test_rows_follow_the_schema_and_best_of_n_picks_by_reward_model() -> None:
    held = HeldOut(["p0", "p1"], ["post0", "post1"], [" r0", " r1"], ref_rm=np.zeros(2), ref_gold=np.full(2, 0.5))
    # Prompt 0: the RM prefers sample 1 (gold 0.9); prompt 1: the RM prefers sample 0 (gold 0.1, a hack).
    pool = _responses(rm=[0.0, 1.0, 2.0, -1.0], gold=[0.2, 0.9, 0.1, 0.8], has_eos=[True, False, True, True])
    row = make_row("SFT", pool, held, 0.0, False, "x", 1.0)
    assert tuple(row) == ROW_KEYS
    assert row["gold"] == pytest.approx(0.5) and row["gold_win_rate"] == pytest.approx(0.5)
    assert row["rm_win_rate"] == pytest.approx((0.75 + 0.5) / 2) and row["no_eos_rate"] == pytest.approx(0.25)
    assert row["rouge_l"] == pytest.approx(0.25) and row["length"] == 5.0 and len(row["gold_win_ci"]) == 2
    bon1, bon2 = best_of_n_rows(pool, held, best_of_n_selection(pool, [1, 2], None))
    assert bon1["gold"] == pytest.approx(row["gold"]) and bon1["kl"] == 0.0
    assert bon2["method"] == "best-of-2" and bon2["kl"] == pytest.approx(analytic_kl(2))
    assert bon2["rm_score"] == pytest.approx((1.0 + 2.0) / 2) and bon2["gold"] == pytest.approx((0.9 + 0.1) / 2)
    assert bon2["gold_win_rate"] == pytest.approx(0.5) and bon2["seconds"] == pytest.approx(10.0)
    assert bon2["no_eos_rate"] == pytest.approx(0.5)  # the chosen sample of prompt 0 has no EOS
    # With a missing-EOS penalty the no-EOS sample loses the ranking on prompt 0.
    penalized = best_of_n_rows(pool, held, best_of_n_selection(pool, [2], -5.0))[0]
    assert penalized["gold"] == pytest.approx((0.2 + 0.1) / 2) and penalized["no_eos_rate"] == 0.0


def test_rows_without_gold_keep_the_keys() -> None:
    held = HeldOut(["p"], ["post"], [" r"], ref_rm=np.zeros(1), ref_gold=None)
    res = _responses(rm=[1.0], gold=[0.0], per_prompt=1)
    res.gold = None
    row = make_row("PPO step 3", res, held, 0.4, True, "x", 1.0)
    assert tuple(row) == ROW_KEYS and row["gold"] is None and row["gold_win_ci"] is None and row["rm_win_rate"] == 1.0


def test_rouge_l_and_slug() -> None:
    scores = rouge_l([" my cat ate my homework", "", " totally different words"], [" my cat ate my homework"] * 3)
    assert scores[0] == pytest.approx(1.0) and scores[1] == 0.0 and scores[2] == 0.0
    assert slug("PPO step 40") == "ppo_step_40" and slug("best-of-16") == "best_of_16"


def test_config_checks_n_and_sorts() -> None:
    assert EvalPolicyConfig(best_of_n=[16, 1, 4, 4]).best_of_n == [1, 4, 16]
    with pytest.raises(ValueError, match="1..64"):
        EvalPolicyConfig(best_of_n=[128])


def test_plots_write_pngs(tmp_path) -> None:
    rows = [{"method": m, "kl": kl, "gold": g, "rm_score": r} for m, kl, g, r in
            [("reference TL;DR", None, 0.6, 0.0), ("SFT", 0.0, 0.4, -0.5), ("PPO step 10", 2.0, 0.5, 0.5),
             ("PPO step 20", 6.0, 0.45, 1.2), ("best-of-1", 0.0, 0.4, -0.5), ("best-of-4", analytic_kl(4), 0.5, 0.4)]]
    assert plot_gold_vs_sqrt_kl(rows, tmp_path / "a.png").stat().st_size > 1000
    history = [{"step": 1, "objective/scores": 0.1, "objective/gold": 0.4, "objective/kl": 0.0},
               {"step": 2, "objective/scores": 0.5, "objective/gold": 0.45, "objective/kl": 1.0},
               {"step": 2, "objective/scores": 0.6, "objective/gold": 0.5, "objective/kl": 1.1},  # resumed: repeats
               {"step": None, "rloo/loss": 1.0}]
    assert [r["objective/scores"] for r in ppo_curve(history)] == [0.1, 0.6]
    assert plot_proxy_vs_gold(history, tmp_path / "b.png").stat().st_size > 1000
    assert plot_proxy_vs_gold([], tmp_path / "c.png") is None


def test_kl_of_sampled_responses_is_zero_for_the_same_policy_and_positive_after_a_change() -> None:
    """sample_responses: sampler log-probs vs a forward pass of the same model agree; a shifted model has KL > 0."""
    import copy
    import random

    from policy.evaluate import policy_kl, sample_responses, settings
    from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer

    torch.set_num_threads(1)
    rnd = random.Random(0)
    words = "the cat sat on a mat while dogs ran in parks".split()
    tok = train_tokenizer([" ".join(rnd.choice(words) for _ in range(20)) for _ in range(100)], vocab_size=300)
    sft = build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=64))
    held = HeldOut(["the cat TL;DR:", "a dog ran TL;DR:"], ["the cat", "a dog ran"], [" cat", " dog"],
                   np.zeros(2), np.zeros(2))
    cfg = settings(EvalPolicyConfig(batch_size=4), 1.0, 6, 32)
    reward = lambda p, r: [len(x) for x in r]  # noqa: E731
    same = sample_responses(sft, sft, tok, held, 4, cfg, reward, lambda post, s: 0.5)
    assert abs(policy_kl(same)) < 1e-4 and len(same.texts) == 8 and same.gold.tolist() == [0.5] * 8
    other = copy.deepcopy(sft)
    with torch.no_grad():
        other.lm_head.weight.add_(torch.randn_like(other.lm_head.weight))
    moved = sample_responses(other, sft, tok, held, 4, cfg, reward, None)
    assert policy_kl(moved) > 0.1 and moved.gold is None


def test_paired_gain_is_the_mean_difference_and_sees_what_unpaired_intervals_miss() -> None:
    # 200 prompts of very different difficulty; the method beats the baseline by 0.05 on almost every one.
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.0, 0.9, 200)
    baseline = difficulty
    method = difficulty + 0.05 + rng.normal(0.0, 0.01, 200)
    gain = paired_gain(method, baseline)
    assert gain["mean"] == pytest.approx(float((method - baseline).mean()))
    assert 0.04 < gain["lo"] < gain["mean"] < gain["hi"] < 0.06 and gain["p_not_above"] == 0.0
    assert gain["prompts"] == 200
    # Unpaired, the two means are within each other's spread: the prompts' difficulty dominates.
    assert abs(method.mean() - baseline.mean()) < baseline.std() / 2
    # No gain: the interval straddles 0 and about half the resamples are <= 0.
    noise = paired_gain(baseline + rng.normal(0.0, 0.05, 200), baseline, seed=1)
    assert noise["lo"] < 0.0 < noise["hi"] and 0.05 < noise["p_not_above"] < 0.95


def test_per_prompt_gold_gives_expected_win_and_gold_under_best_of_n_weights() -> None:
    held = HeldOut(["p0", "p1"], ["post0", "post1"], [" r0", " r1"], ref_rm=np.zeros(2), ref_gold=np.full(2, 0.5))
    pool = _responses(rm=[0.0, 1.0, 2.0, -1.0], gold=[0.2, 0.9, 0.5, 0.8], has_eos=[True, True, True, True])
    uniform = per_prompt_gold(pool, held)
    np.testing.assert_allclose(uniform["gold_win"], [0.5, 0.75])  # prompt 1: a tie (0.5) counts half
    np.testing.assert_allclose(uniform["gold"], [0.55, 0.65])
    best2 = per_prompt_gold(pool, held, best_of_n_selection(pool, [2], None)[2])  # keeps sample 1, then sample 0
    np.testing.assert_allclose(best2["gold_win"], [1.0, 0.5])
    np.testing.assert_allclose(best2["gold"], [0.9, 0.5])
    no_gold = HeldOut(["p0", "p1"], ["a", "b"], [" r0", " r1"], ref_rm=np.zeros(2), ref_gold=None)
    assert per_prompt_gold(pool, no_gold) is None
