"""Shared RL helpers against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from policy.rl_utils import (
    KLController,
    apply_missing_eos_penalty,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    entropy_from_logits,
    explained_variance,
    first_true_indices,
    kl_estimate,
    last_token_index,
    leave_one_out_centered,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    truncate_after_eos,
)

EOS, PAD = 0, 1


def test_gae_three_tokens_by_hand() -> None:
    # gamma 1, lambda 0.95; value after the last token is 0.
    # t=2: delta = 1.0 + 0 - 0.3 = 0.7                  A2 = 0.7
    # t=1: delta = -0.2 + 0.3 - 0.4 = -0.3              A1 = -0.3 + 0.95 * 0.7 = 0.365
    # t=0: delta = 0.1 + 0.4 - 0.5 = 0.0                A0 = 0.95 * 0.365 = 0.34675
    rewards = torch.tensor([[0.1, -0.2, 1.0, 7.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 9.0]])
    mask = torch.tensor([[True, True, True, False]])  # the 4th token is padding and must not count
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=0.95)
    torch.testing.assert_close(adv, torch.tensor([[0.34675, 0.365, 0.7, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.84675, 0.765, 1.0, 0.0]]))


def test_gae_gamma_discounts() -> None:
    # gamma 0.5, lambda 1, zero values: A_t = discounted return = 1 * 0.5^(2-t)
    adv, _ = compute_gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), 0.5, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.25, 0.5, 1.0]]))


def test_masked_stats_and_whitening() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(2.0)
    assert masked_var(values, mask).item() == pytest.approx(1.0)  # (1 + 0 + 1) / (3 - 1)
    assert masked_var(values, mask, unbiased=False).item() == pytest.approx(2 / 3)
    white = masked_whiten(values, mask)
    torch.testing.assert_close(white[0, :3], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-6, rtol=0)
    kept = masked_whiten(values, mask, shift_mean=False)
    torch.testing.assert_close(kept[0, :3], torch.tensor([1.0, 2.0, 3.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(masked_mean(values, mask, dim=1), torch.tensor([2.0]))


def test_kl_estimators_by_hand() -> None:
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    # log r = ref - logp = log 0.5
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))
    same = kl_estimate(logp, logp, "k3")
    assert same.item() == 0.0
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(logp, ref, "k4")  # type: ignore[arg-type]


def test_first_true_and_truncation() -> None:
    responses = torch.tensor(
        [
            [5, EOS, 7, 8],  # EOS at 1: tokens after become pad
            [5, 6, 7, 8],  # no EOS: untouched, penalized later
            [EOS, EOS, 7, 8],  # the first EOS counts
        ]
    )
    assert first_true_indices(responses == EOS).tolist() == [1, 4, 0]
    truncated, mask, has_eos = truncate_after_eos(responses, EOS, PAD)
    assert truncated.tolist() == [[5, EOS, PAD, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]]
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    assert has_eos.tolist() == [True, False, True]
    assert last_token_index(mask).tolist() == [1, 3, 0]
    scores = torch.tensor([0.3, 2.0, -0.1])
    assert apply_missing_eos_penalty(scores, has_eos, -1.0).tolist() == pytest.approx([0.3, -1.0, -0.1])
    assert apply_missing_eos_penalty(scores, has_eos, None).tolist() == pytest.approx(scores.tolist())


def test_logprobs_and_entropy() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert logprobs_from_logits(logits, torch.tensor([1])).item() == pytest.approx(math.log(0.25))
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert entropy_from_logits(logits).item() == pytest.approx(expected)


def test_clipped_policy_loss_by_hand() -> None:
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.0, 5.0]]))
    adv = torch.tensor([[1.0, 1.0, -2.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # token 0: r=1.5, A=1: max(-1.5, -1.2) = -1.2 (clipped); token 1: r=0.5: max(-0.5, -0.8) = -0.5;
    # token 2: r=1, A=-2: 2; token 3 is padding.
    loss, stats = clipped_policy_loss(new, old, adv, mask, cliprange=0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 2.0) / 3)
    assert stats["clipfrac"].item() == pytest.approx(1 / 3)
    assert stats["approxkl"].item() == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 3)
    assert stats["ratio"].item() == pytest.approx(1.0)


def test_clipped_value_loss_by_hand() -> None:
    old = torch.tensor([[0.0, 0.0, 0.0]])
    vpred = torch.tensor([[1.0, 0.1, 50.0]])
    returns = torch.tensor([[2.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    # token 0: (1-2)^2 = 1 vs clipped (0.2-2)^2 = 3.24 -> 3.24; token 1: (0.1+1)^2 = 1.21 both ways
    loss, stats = clipped_value_loss(vpred, old, returns, mask, cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.5 * (3.24 + 1.21) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)


def test_explained_variance() -> None:
    returns = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 3), 2.0), returns, mask).item() == pytest.approx(0.0)


def test_adaptive_kl_controller() -> None:
    fixed = KLController(0.05)
    fixed.update(current_kl=100.0, n_steps=64)
    assert fixed.value == 0.05
    ctl = KLController(0.1, target=6.0, horizon=100)
    ctl.update(current_kl=12.0, n_steps=10)  # error clipped to 0.2: beta *= 1 + 0.2 * 10 / 100
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(current_kl=4.5, n_steps=50)  # error -0.25 clipped to -0.2: beta *= 0.9
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.9)


def test_leave_one_out_centering_by_hand() -> None:
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 13.0])  # two prompts, three samples each
    centred = leave_one_out_centered(scores, group_size=3)
    assert centred.tolist() == pytest.approx([1 - 2.5, 2 - 2, 3 - 1.5, 10 - 11.5, 10 - 11.5, 13 - 10])
    assert leave_one_out_centered(torch.tensor([4.0, 1.0]), 2).tolist() == [3.0, -3.0]
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        leave_one_out_centered(scores, 1)
    with pytest.raises(ValueError, match="6 scores do not split into groups of 4"):
        leave_one_out_centered(scores, 4)
