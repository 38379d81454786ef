"""A tiny, self-contained steering testbed: Stiennon-format prompts and a tiny GPT-2 with a local BPE.

Tests and `bench/steer.py` need a model and posts without the data pipeline or any download; this builds
both in about a second from a seed, always the same way, so numbers from different runs compare.
"""

from __future__ import annotations

import random

from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer

_SUBS = ["relationships", "personalfinance", "AskReddit", "tifu", "legaladvice"]
_WORDS = (
    "my friend and I went to the store yesterday because we needed money for rent and the landlord "
    "said he would call back tomorrow but my girlfriend thinks we should move out soon since work has "
    "been stressful lately and the car broke down again last week so I asked my parents for advice about "
    "saving more each month while paying off credit card debt and they told me to talk with my boss"
).split()


def toy_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` distinct prompts in the Stiennon et al. format, ending with `TL;DR:`."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        title = " ".join(rng.choices(_WORDS, k=rng.randint(4, 8))).capitalize()
        post = " ".join(rng.choices(_WORDS, k=rng.randint(25, 45))) + "."
        p = f"SUBREDDIT: r/{rng.choice(_SUBS)}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
        if p not in out:
            out.append(p)
    return out


def toy_model(
    seed: int = 0, n_layer: int = 2, n_embd: int = 64, vocab_size: int = 512, extra_special_tokens: list[str] = ()
) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    """A randomly initialized tiny GPT-2 and a BPE trained on the toy prompts plus some plain words."""
    texts = toy_prompts(200, seed=seed + 1) + [" ".join(_WORDS)] * 5 + [f" x {w}." for w in _WORDS]
    tok = train_tokenizer(texts, vocab_size=vocab_size, extra_special_tokens=list(extra_special_tokens))
    spec = ModelSpec(n_layer=n_layer, n_embd=n_embd, n_head=4, n_positions=512, seed=seed)
    model = build_tiny_causal_lm(tok, spec)
    model.eval()
    return model, tok
