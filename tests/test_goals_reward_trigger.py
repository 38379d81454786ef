"""Reward triggers: frozen weights, held-out-only report, KL sanity, and the soft REINFORCE update helps."""

from __future__ import annotations

import math

import pytest
import torch

from policy.goals import reward_trigger as rt
from policy.goals.common import weights_fingerprint
from policy.goals.toy import toy_model, toy_prompts

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return toy_model(seed=0)


def money_reward(prompts: list[str], responses: list[str]) -> torch.Tensor:
    """A reward the tiny model can be steered towards: how often the summary says 'money'."""
    return torch.tensor([float(r.count("money")) for r in responses])


def test_empty_trigger_has_zero_kl(tiny):
    model, tok = tiny
    cfg = rt.RewardTriggerConfig(response_length=8, eval_samples_per_post=2)
    empty = model.get_input_embeddings().weight[:0].detach()
    rep = rt.evaluate_heldout(model, tok, toy_prompts(2), empty, money_reward, cfg, gold_fn=lambda p, s: len(s))
    assert abs(rep.kl) < 1e-3  # steered == unsteered: embeddings path and ids path agree
    assert rep.n_posts == 2 and rep.gold_steered is not None


@pytest.mark.parametrize("mode", ["discrete", "soft"])
def test_reward_trigger_runs_frozen_and_reports_heldout(tiny, mode):
    model, tok = tiny
    prompts = toy_prompts(6, seed=5)
    train, heldout = prompts[:4], prompts[4:]
    cfg = rt.RewardTriggerConfig(
        mode=mode, n_tokens=3, steps=2, posts_per_step=2, samples_per_post=3, response_length=8,
        n_candidates=3, eval_samples_per_post=2, lr=0.5,
    )
    fp = weights_fingerprint(model)
    res = rt.run(model, tok, train, heldout, money_reward, cfg, gold_fn=lambda p, s: float(len(s)))
    assert weights_fingerprint(model) == fp
    assert all(p.grad is None for p in model.parameters())
    assert len(res.history) == 2
    assert res.heldout.n_posts == len(heldout)
    assert math.isfinite(res.heldout.kl)
    if mode == "discrete":
        assert len(res.trigger_ids) == 3
    else:
        assert res.soft_embeds.shape == (3, model.config.n_embd)
    with pytest.raises(ValueError, match="held-out"):
        rt.run(model, tok, train, heldout + train[:1], money_reward, cfg)


def test_soft_reinforce_raises_exact_expected_reward(tiny):
    """One-token summaries make E[r] exact: sum_v p(v | prompt + soft trigger) r(v); it must go up."""
    model, tok = tiny
    r_tok = torch.tensor([float("e" in tok.decode([v])) for v in range(len(tok))])

    def e_reward(prompts: list[str], responses: list[str]) -> torch.Tensor:
        return torch.tensor([float("e" in r) for r in responses])

    prompts = toy_prompts(3, seed=7)
    cfg = rt.RewardTriggerConfig(
        mode="soft", n_tokens=4, position="suffix", steps=15, posts_per_step=1, samples_per_post=16,
        response_length=1, lr=0.05, eval_samples_per_post=2, seed=1,
    )
    res = rt.run(model, tok, prompts[:1], prompts[1:], e_reward, cfg)
    posts = rt.PostParts(tok, prompts[:1], "suffix", model.device)
    W = model.get_input_embeddings().weight.detach()
    x_id = tok.convert_tokens_to_ids("Ġx")

    def expected(trig: torch.Tensor) -> float:
        with torch.no_grad():
            pre = rt.pre_embeds(model, posts.before[0], trig, posts.after[0])
            p = torch.softmax(model(inputs_embeds=pre[None]).logits[0, -1], -1)
        return float((p * r_tok).sum())

    assert expected(res.soft_embeds) > expected(W[[x_id] * 4]) + 0.005  # random tiny LM: small but real
