"""Sensitivity maps: shapes, a position known to carry all the signal, frozen weights, the PNG."""

from __future__ import annotations

import copy

import torch

from policy.goals.common import encode, weights_fingerprint
from policy.goals.sensitivity import SensitivityConfig, plot_sensitivity, sensitivity_map
from policy.goals.toy import toy_model, toy_prompts

torch.set_num_threads(1)


def test_map_shape_png_and_frozen(tmp_path):
    model, tok = toy_model(seed=0)
    prompt = toy_prompts(1)[0]
    fp = weights_fingerprint(model)
    smap = sensitivity_map(model, tok, prompt, " money")
    assert weights_fingerprint(model) == fp
    T = encode(tok, prompt).numel()
    assert len(smap.tokens) == T
    for row in smap.rows().values():
        assert row.shape == (T,) and torch.isfinite(row).all()
    # the replace ablation is exact: recompute one position directly
    ids = encode(tok, prompt)
    i = T // 2
    ids[i] = tok.pad_token_id
    tgt = encode(tok, " money")
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.cat([ids, tgt])[None]).logits[0, T - 1], -1)[tgt[0]]
    assert abs(float(smap.ablate_replace[i]) - (smap.logprob - float(lp))) < 1e-4
    png = plot_sensitivity(smap, tmp_path / "sens.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_known_position_only_last_token_matters():
    """With every attention output zeroed, the next-token prediction reads only the last token."""
    model, tok = toy_model(seed=1)
    model = copy.deepcopy(model)
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_proj.weight.zero_()
            block.attn.c_proj.bias.zero_()
    smap = sensitivity_map(model, tok, toy_prompts(1)[0], " rent", SensitivityConfig(replace_with="eos"))
    assert smap.grad_norm[-1] > 0 and smap.grad_norm[:-1].abs().max() < 1e-7
    assert smap.ablate_replace[:-1].abs().max() < 1e-5
    assert smap.ablate_replace[-1].abs() > 1e-4
    assert int(smap.grad_norm.argmax()) == len(smap.tokens) - 1
