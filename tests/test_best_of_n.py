"""Best-of-n keeps each prompt's highest-reward sample and reports the analytic KL."""

from __future__ import annotations

import math
import random

import pytest
import torch

from policy.best_of_n import BestOfNConfig, analytic_kl, best_of_n
from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer


def test_analytic_kl() -> None:
    assert analytic_kl(1) == 0.0
    assert analytic_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert analytic_kl(64) == pytest.approx(math.log(64) - 63 / 64)
    with pytest.raises(ValueError):
        analytic_kl(0)


def test_best_of_n_picks_the_highest_score() -> None:
    torch.set_num_threads(1)
    rnd = random.Random(0)
    words = "the cat sat on a mat while dogs ran".split()
    tok = train_tokenizer([" ".join(rnd.choice(words) for _ in range(20)) for _ in range(100)], vocab_size=300)
    model = build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=64))
    count_e = lambda p, r: [t.count("e") + 0.01 * len(t) for t in r]  # noqa: E731
    torch.manual_seed(0)
    result = best_of_n(model, tok, ["the cat", "dogs ran"], count_e, BestOfNConfig(n=8, response_length=6, batch_size=5))
    assert result.all_scores.shape == (2, 8) and len(result.texts) == 2
    torch.testing.assert_close(result.scores, result.all_scores.max(dim=1).values)
    assert [count_e(None, [t])[0] for t in result.texts] == pytest.approx(result.scores.tolist())
    assert result.kl == pytest.approx(math.log(8) - 7 / 8)
    with pytest.raises(ValueError, match="less than or equal to 64"):
        BestOfNConfig(n=65)
