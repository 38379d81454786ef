"""Soft prompts and PEZ projection: the loss goes down, weights stay bit-identical, projection is real text."""

from __future__ import annotations

import pytest
import torch

from policy.goals import soft_prompt
from policy.goals.common import not_allowed_token_ids, weights_fingerprint
from policy.goals.gcg import candidate_losses
from policy.goals.common import prepare_case
from policy.goals.toy import toy_model, toy_prompts

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return toy_model(seed=0)


@pytest.mark.parametrize("mode", ["soft", "pez"])
def test_soft_prompt_lowers_loss_and_keeps_weights(tiny, mode):
    model, tok = tiny
    prompt = toy_prompts(1)[0]
    fp = weights_fingerprint(model)
    cfg = soft_prompt.SoftPromptConfig(n_tokens=4, steps=30, lr=0.1, mode=mode, early_stop=False)
    res = soft_prompt.run(model, tok, prompt, " rent", cfg)
    assert weights_fingerprint(model) == fp
    assert all(p.grad is None for p in model.parameters())
    assert res.soft_embeds.shape == (4, model.config.n_embd)
    if mode == "soft":
        assert res.soft_loss < res.initial_loss - 0.5
    else:
        assert res.projected_loss < res.initial_loss
    # the projection is made of allowed tokens and its loss is the exact loss of those ids
    assert not set(res.projected_ids) & set(not_allowed_token_ids(tok).tolist())
    case = prepare_case(model, tok, prompt, " rent", "suffix")
    exact, _ = candidate_losses(model, [case], torch.tensor([res.projected_ids]))
    assert float(exact[0]) == pytest.approx(res.projected_loss, abs=1e-5)


def test_projection_of_token_embeddings_is_identity(tiny):
    model, tok = tiny
    W = model.get_input_embeddings().weight.detach()
    ids = torch.tensor([tok.convert_tokens_to_ids("x"), 100, 200])
    banned = torch.tensor([tok.pad_token_id])
    assert soft_prompt.project(W, W[ids], banned).tolist() == ids.tolist()
