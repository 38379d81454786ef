"""Sampling and scoring under left padding: position ids, KV cache, EOS truncation, temperature-consistent log-probs.

Every test runs on a tiny random GPT-2 whose weights are scaled up so that its next-token distribution
depends strongly on the context and on the absolute positions (`test_model_depends_on_context_and_position`
guards that). The cached sampler is compared against a reference that knows nothing about padding or caches:
each prompt alone, unpadded, with a full forward pass over the whole sequence at every step. A sampler that
drops the cache and recomputes with wrong positions, or keeps the cache with wrong positions, fails here.
"""

from __future__ import annotations

import random

import pytest
import torch

from data.special_tokens import EOS_TOKEN
from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from policy.sampling import forward_logprobs, generate, left_pad_prompts, position_ids_from_mask, sample

WORDS = "the cat sat on a mat while dogs ran in parks and birds flew over trees".split()
# Different lengths, so all rows but the longest are left-padded (by 1 to 8 tokens).
PROMPTS = ["the cat", "a dog ran in the parks and birds flew over", "birds", "the mat while dogs ran"]


@pytest.fixture(scope="module")
def tokenizer():
    rnd = random.Random(0)
    return train_tokenizer([" ".join(rnd.choice(WORDS) for _ in range(20)) for _ in range(200)], vocab_size=300)


@pytest.fixture()
def model(tokenizer):
    """GPT-2's 0.02 init gives near-uniform logits that barely move with context or position; std 0.2-0.3
    gives a peaked distribution (entropy ~4.6 nats of 5.7) that moves by nats when either changes."""
    torch.set_num_threads(1)
    model = build_tiny_causal_lm(tokenizer, ModelSpec(n_layer=2, n_embd=32, n_head=2, n_positions=64)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:  # embeddings and projections; layer norms keep weight 1, bias 0
                std = 0.3 if name.startswith(("transformer.wte", "transformer.wpe")) else 0.2
                param.normal_(0.0, std, generator=gen)
    return model


def eos_prone(model, tokenizer):
    """Raise the EOS logit by a constant ~2 nats (p(EOS) ~ 0.02 per step, context-dependent) so that some
    10-token responses end early and some do not; ln_f keeps its weight, so logits still follow the context."""
    with torch.no_grad():
        direction = torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(1))
        direction = direction / direction.norm()
        model.transformer.wte.weight[tokenizer.eos_token_id] = 2.0 * direction  # tied: also the EOS output row
        model.transformer.ln_f.bias.add_(direction)
    return model


def real_tokens(query_ids: torch.Tensor, query_mask: torch.Tensor, row: int) -> list[int]:
    return query_ids[row][query_mask[row].bool()].tolist()


@torch.no_grad()
def reference_next_logprobs(model, tokens: list[int], temperature: float) -> torch.Tensor:
    """log p(next | tokens) from one full forward pass over the unpadded sequence (default positions 0..n-1)."""
    logits = model(input_ids=torch.tensor([tokens])).logits[0, -1].float()
    return torch.log_softmax(logits / temperature if temperature > 0 else logits, -1)


def test_model_depends_on_context_and_position(model, tokenizer) -> None:
    """Guard for the fixture: were the logits constant, every test below would pass for a broken sampler."""
    ids = torch.tensor([tokenizer("the cat sat on a mat", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        base = model(input_ids=ids).logits[0, -1].log_softmax(-1)
        other_first = ids.clone()
        other_first[0, 0] = tokenizer("dogs", add_special_tokens=False)["input_ids"][0]
        context = model(input_ids=other_first).logits[0, -1].log_softmax(-1)
        shifted = model(input_ids=ids, position_ids=torch.arange(ids.size(1))[None] + 3).logits[0, -1].log_softmax(-1)
    assert (context - base).abs().max() > 0.5
    assert (shifted - base).abs().max() > 0.5


def test_left_pad_keeps_prompt_end(tokenizer) -> None:
    long_prompt = "a dog ran in the parks TL;DR:"
    ids, mask = left_pad_prompts(tokenizer, ["a", long_prompt], max_prompt_length=4)
    assert ids.shape == (2, 4)
    assert ids[1].tolist() == tokenizer(long_prompt)["input_ids"][-4:]  # the end ('TL;DR:') survives
    assert mask[0].tolist()[0] == 0 and mask[0].tolist()[-1] == 1  # left padding
    assert position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1]])).tolist() == [[0, 0, 0, 1, 2]]


def test_greedy_cached_generation_matches_full_forward_reference(model, tokenizer) -> None:
    ids, mask = left_pad_prompts(tokenizer, PROMPTS)
    assert int((mask == 0).sum()) > 0  # some rows are padded
    length, eos, pad = 8, tokenizer.eos_token_id, tokenizer.pad_token_id
    gen = generate(model, ids, mask, length, 0.0, eos, pad, tokenizer)
    for row in range(len(PROMPTS)):
        tokens, want_ids, want_lp = real_tokens(ids, mask, row), [], []
        while len(want_ids) < length and eos not in want_ids:
            logprobs = reference_next_logprobs(model, tokens, 0.0)
            token = int(logprobs.argmax())
            want_ids.append(token)
            want_lp.append(float(logprobs[token]))
            tokens.append(token)
        padding = length - len(want_ids)
        assert gen.response_ids[row].tolist() == want_ids + [pad] * padding, PROMPTS[row]
        torch.testing.assert_close(gen.logprobs[row], torch.tensor(want_lp + [0.0] * padding), atol=1e-4, rtol=0)


def test_sampled_logprobs_match_full_forward_reference(model, tokenizer) -> None:
    """At temperature 0.7 the tokens are random; each one's reported log-prob must be the reference's
    log p(token | prompt, earlier tokens) at that temperature, position by position."""
    ids, mask = left_pad_prompts(tokenizer, PROMPTS)
    torch.manual_seed(0)
    gen = generate(model, ids, mask, 8, 0.7, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer)
    for row in range(len(PROMPTS)):
        tokens, want = real_tokens(ids, mask, row), []
        for token in gen.response_ids[row][gen.response_mask[row]].tolist():
            want.append(float(reference_next_logprobs(model, tokens, 0.7)[token]))
            tokens.append(token)
        n = len(want)
        torch.testing.assert_close(gen.logprobs[row, :n], torch.tensor(want), atol=1e-4, rtol=0)
        assert bool((gen.logprobs[row, n:] == 0).all())


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
    assert (naive_lp - alone[0]).abs().max() > 1e-2


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
