"""On-policy reward check: within-prompt pair agreement with gold and within-prompt correlations."""

import numpy as np
import pytest

from policy.reward_diagnostics import implied_correlation, on_policy_agreement, within_prompt_correlation


def test_agreement_counts_within_prompt_pairs_by_hand():
    gold = np.array([[0.1, 0.5, 0.9], [0.2, 0.2, 0.8]])
    rm = np.array([[1.0, 2.0, 0.0], [5.0, 0.0, 1.0]])
    # prompt 0: pairs (0,1) agree, (0,2) disagree, (1,2) disagree; prompt 1: (0,1) gold tie -> skipped,
    # (0,2) disagree, (1,2) agree. 2 of 5 counted pairs agree.
    out = on_policy_agreement(rm, gold)
    assert out["pairs"] == 5 and out["accuracy"] == pytest.approx(2 / 5)
    assert out["accuracy_ci_low"] <= out["accuracy"] <= out["accuracy_ci_high"]


def test_agreement_is_one_for_gold_itself_and_half_for_a_constant():
    gold = np.random.default_rng(0).random((20, 6))
    assert on_policy_agreement(gold, gold)["accuracy"] == 1.0
    assert on_policy_agreement(-gold, gold)["accuracy"] == 0.0
    assert on_policy_agreement(np.zeros_like(gold), gold)["accuracy"] == 0.5  # ties count half


def test_agreement_never_pairs_samples_of_different_prompts():
    # Across prompts the reward would rank perfectly, within each prompt it is reversed.
    gold = np.array([[0.1, 0.2], [0.8, 0.9]])
    rm = np.array([[1.0, 0.0], [11.0, 10.0]])
    assert on_policy_agreement(rm, gold)["accuracy"] == 0.0


def test_min_gold_gap_skips_pairs_gold_cannot_separate():
    gold, rm = np.array([[0.50, 0.51, 0.9]]), np.array([[1.0, 0.0, 2.0]])
    assert on_policy_agreement(rm, gold, min_gold_gap=0.02)["pairs"] == 2
    assert on_policy_agreement(rm, gold, min_gold_gap=0.0)["pairs"] == 3


def test_within_prompt_correlation_removes_prompt_level_offsets():
    feature = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]])
    score = np.array([[5.0, 4.0, 3.0], [-1.0, 0.0, 1.0]])  # -1 in prompt 0, +1 in prompt 1
    assert within_prompt_correlation(score, feature) == pytest.approx(0.0)
    assert within_prompt_correlation(feature * 3 + 7, feature) == pytest.approx(1.0)
    constant = np.ones((2, 3))
    assert np.isnan(within_prompt_correlation(constant, feature))


def test_shapes_are_checked_with_names():
    with pytest.raises(ValueError, match="rm and gold"):
        on_policy_agreement(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="score and feature"):
        within_prompt_correlation(np.zeros(3), np.zeros(3))


def test_implied_correlation_by_hand_and_on_normal_scores():
    assert implied_correlation(0.5) == pytest.approx(0.0)
    assert implied_correlation(1.0) == pytest.approx(1.0) and implied_correlation(0.0) == pytest.approx(-1.0)
    assert implied_correlation(2 / 3) == pytest.approx(0.5)  # tau = 1/3 = (2/pi) arcsin(1/2)
    # Jointly normal within-prompt scores with correlation 0.4: the agreement maps back to about 0.4, and
    # best-of-4 by the noisy score gains about 0.4 of what best-of-4 by gold gains.
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(4000, 4))
    rm = 0.4 * gold + np.sqrt(1 - 0.4**2) * rng.normal(size=gold.shape) + rng.normal(size=(4000, 1)) * 5
    out = on_policy_agreement(rm, gold, min_gold_gap=0.0)
    assert out["implied_rho"] == pytest.approx(0.4, abs=0.03)
    assert out["implied_rho_ci_low"] < out["implied_rho"] < out["implied_rho_ci_high"]
    by_rm = gold[np.arange(len(gold)), rm.argmax(1)].mean()
    assert by_rm / gold.max(1).mean() == pytest.approx(0.4, abs=0.05)
