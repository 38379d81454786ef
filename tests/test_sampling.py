"""Sampling and scoring under left padding: position ids, EOS truncation, temperature-consistent log-probs."""

from __future__ import annotations

import random

import pytest
import torch

from policy.models import EOS_TOKEN, ModelSpec, build_tiny_causal_lm, train_tokenizer
from policy.sampling import forward_logprobs, generate, left_pad_prompts, position_ids_from_mask, sample

WORDS = "the cat sat on a mat while dogs ran in parks and birds flew over trees".split()


@pytest.fixture(scope="module")
def tokenizer():
    rnd = random.Random(0)
    return train_tokenizer([" ".join(rnd.choice(WORDS) for _ in range(20)) for _ in range(200)], vocab_size=300)


@pytest.fixture()
def model(tokenizer):
    torch.set_num_threads(1)
    return build_tiny_causal_lm(tokenizer, ModelSpec(n_layer=2, n_embd=32, n_head=2, n_positions=64)).eval()


def eos_prone(model, tokenizer, eos_logit: float = 2.5):
    """Make every position output the same hidden state, one that gives EOS logit `eos_logit` (p ~ 0.3)."""
    with torch.no_grad():
        direction = torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(0))
        direction = direction / direction.norm() * eos_logit**0.5
        model.transformer.wte.weight[tokenizer.eos_token_id] = direction  # tied: also the EOS output row
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
    return model


def test_left_pad_keeps_prompt_end(tokenizer) -> None:
    long_prompt = "a dog ran in the parks TL;DR:"
    ids, mask = left_pad_prompts(tokenizer, ["a", long_prompt], max_prompt_length=4)
    assert ids.shape == (2, 4)
    assert ids[1].tolist() == tokenizer(long_prompt)["input_ids"][-4:]  # the end ('TL;DR:') survives
    assert mask[0].tolist()[0] == 0 and mask[0].tolist()[-1] == 1  # left padding
    assert position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1]])).tolist() == [[0, 0, 0, 1, 2]]


def test_padded_and_unpadded_prompts_score_the_same(model, tokenizer) -> None:
    prompts = ["the cat", "a dog ran in the parks and birds flew"]
    ids, mask = left_pad_prompts(tokenizer, prompts)
    response = torch.tensor([[5, 6, 7], [5, 6, 7]])
    batched = forward_logprobs(model, ids, mask, response)
    alone_ids, alone_mask = left_pad_prompts(tokenizer, prompts[:1])
    alone = forward_logprobs(model, alone_ids, alone_mask, response[:1])
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=0)
    # Without position ids the padded row shifts (the trap the rule exists for).
    full = torch.cat([ids, response], 1)
    naive = model(input_ids=full, attention_mask=torch.cat([mask, torch.ones_like(response)], 1)).logits
    naive_lp = torch.log_softmax(naive[0, ids.size(1) - 1 : -1], -1).gather(-1, response[0, :, None]).squeeze(-1)
    assert (naive_lp - alone[0]).abs().max() > 1e-3


def test_generate_truncates_after_eos_and_logprobs_match_forward(model, tokenizer) -> None:
    model = eos_prone(model, tokenizer)
    torch.manual_seed(0)
    ids, mask = left_pad_prompts(tokenizer, ["the cat sat"] * 12 + ["birds flew over the trees"] * 12)
    gen = generate(model, ids, mask, 10, 0.7, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer)
    assert gen.response_ids.shape == (24, 10) and gen.logprobs.shape == (24, 10)
    assert gen.has_eos.any() and not gen.has_eos.all()
    for row, text, has_eos, m in zip(gen.response_ids.tolist(), gen.texts, gen.has_eos, gen.response_mask):
        assert EOS_TOKEN not in text
        if has_eos:
            first = row.index(tokenizer.eos_token_id)
            assert all(t == tokenizer.pad_token_id for t in row[first + 1 :])
            assert int(m.sum()) == first + 1  # EOS counts as a real token
        else:
            assert tokenizer.eos_token_id not in row and bool(m.all())
    recomputed = forward_logprobs(model, ids, mask, gen.response_ids, gen.response_mask, temperature=0.7)
    torch.testing.assert_close(recomputed, gen.logprobs, atol=1e-4, rtol=0)
    at_t1 = forward_logprobs(model, ids, mask, gen.response_ids, gen.response_mask, temperature=1.0)
    assert (at_t1 - gen.logprobs).abs().max() > 1e-3  # temperature matters, so it must be applied


def test_greedy_is_deterministic_and_sample_chunks(model, tokenizer) -> None:
    prompts = ["the cat", "dogs ran", "birds flew over"]
    a = sample(model, tokenizer, prompts, response_length=5, temperature=0.0, batch_size=2)
    b = sample(model, tokenizer, prompts, response_length=5, temperature=0.0, batch_size=3)
    assert [len(g.texts) for g in a] == [2, 1]
    assert [t for g in a for t in g.texts] == b[0].texts
    with_entropy = forward_logprobs(model, *left_pad_prompts(tokenizer, prompts), b[0].response_ids, return_entropy=True)
    assert with_entropy[1].shape == (3, 5) and bool((with_entropy[1] > 0).all())
