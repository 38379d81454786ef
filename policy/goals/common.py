"""Shared pieces of input-only steering: frozen weights, trigger placement, allowed tokens, target loss.

Every method in `policy.goals` holds the model's weights fixed and changes only its input. `frozen` makes
that a guarantee (no parameter can receive a gradient) and `weights_fingerprint` lets a test or a run
check it afterwards (bit-identical tensors, not "close").

A trigger is a run of `k` tokens placed at one of three positions of a Stiennon-format prompt:
`prefix` (before `SUBREDDIT:`), `before_tldr` (just before `TL;DR:`) or `suffix` (after `TL;DR:`).
The prompt is split into `before` / `after` text there; each side is tokenized on its own and the ids are
concatenated `before + trigger + after + target`. That is how the model will see the trigger when it is
inserted at the token level (and the retokenization filter keeps the trigger itself round-trippable).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

Position = Literal["prefix", "before_tldr", "suffix"]
LogFn = Callable[[dict[str, float], int], None]
RewardFn = Callable[[list[str], list[str]], torch.Tensor]
TLDR_MARKER = "TL;DR:"


# ----------------------------------------------------------------------------------------- frozen weights
@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Weights fixed while steering: no parameter takes a gradient, dropout off (deterministic log-probs).

    The caller's `requires_grad` flags and train/eval mode come back afterwards, so steering a model that
    is also being trained elsewhere does not silently freeze it.
    """
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer's bytes: equal fingerprints mean bit-identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- trigger placement
def split_prompt(prompt: str, position: Position) -> tuple[str, str]:
    """(before, after) text around the trigger slot; `before_tldr` needs a `TL;DR:` in the prompt."""
    if position == "prefix":
        return "", prompt
    if position == "suffix":
        return prompt, ""
    if position == "before_tldr":
        i = prompt.rfind(TLDR_MARKER)
        if i < 0:
            raise ValueError(f"position='before_tldr' needs {TLDR_MARKER!r} in the prompt; got {prompt[-60:]!r}")
        return prompt[:i], prompt[i:]
    raise ValueError(f"position must be prefix|before_tldr|suffix, got {position!r}")


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> torch.Tensor:
    """Token ids of `text` without special tokens: (T,) long."""
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def target_ids_of(tokenizer: PreTrainedTokenizerBase, target: str | int | list[int]) -> torch.Tensor:
    """Target as ids (n_target,): a string is tokenized, an int is one token id."""
    if isinstance(target, int):
        ids = torch.tensor([target], dtype=torch.long)
    elif isinstance(target, str):
        ids = encode(tokenizer, target)
    else:
        ids = torch.tensor(list(target), dtype=torch.long)
    if ids.numel() == 0:
        raise ValueError(f"target={target!r} tokenizes to no ids")
    return ids


@dataclass
class SteerCase:
    """One prompt prepared for steering: ids around the trigger slot and the prefix KV cache."""

    before_ids: torch.Tensor  # (Tb,)
    after_ids: torch.Tensor  # (Ta,)
    target_ids: torch.Tensor  # (n_target,)
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None  # per layer (1, nh, Tb, hs), None if Tb == 0

    def cache(self, batch: int) -> DynamicCache | None:
        """A fresh cache over the shared prefix, expanded (no copy) to `batch` rows.

        A new `DynamicCache` per call because the model appends to the cache it is given; the stored
        tensors themselves are never written (the layers `cat` onto them).
        """
        if self.prefix_kv is None:
            return None
        return DynamicCache([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.prefix_kv])

    def uncached_before(self) -> torch.Tensor:
        """The ids before the trigger that the model must still read: none when they sit in the cache."""
        return self.before_ids[:0] if self.prefix_kv is not None else self.before_ids

    def full_ids(self, trigger_ids: torch.Tensor) -> torch.Tensor:
        """before + trigger + after + target: (T,) for a direct (uncached) forward pass."""
        return torch.cat([self.before_ids, trigger_ids, self.after_ids, self.target_ids])


@torch.no_grad()
def prepare_case(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    target: str | int | list[int],
    position: Position,
    use_prefix_cache: bool = True,
) -> SteerCase:
    """Tokenize around the slot and (1) run the part before the trigger once, keeping its KV cache."""
    before, after = split_prompt(prompt, position)
    before_ids, after_ids = encode(tokenizer, before), encode(tokenizer, after)
    device = model.device
    before_ids, after_ids = before_ids.to(device), after_ids.to(device)
    tgt = target_ids_of(tokenizer, target).to(device)
    kv = None
    if use_prefix_cache and before_ids.numel() > 0:
        out = model(input_ids=before_ids[None], use_cache=True)
        kv = [(layer.keys, layer.values) for layer in out.cache.layers]
    return SteerCase(before_ids, after_ids, tgt, kv)


# ----------------------------------------------------------------------------------------- allowed tokens
def not_allowed_token_ids(tokenizer: PreTrainedTokenizerBase, allow_non_ascii: bool = False) -> torch.Tensor:
    """Ids a trigger may not use: special/added tokens, tokens that decode to nothing, and (by default)
    tokens whose text is not printable ASCII (byte fragments, newlines, control characters)."""
    bad = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}).keys())
    for i in range(len(tokenizer)):
        s = tokenizer.decode([i])
        if not s or (not allow_non_ascii and not (s.isascii() and s.isprintable())):
            bad.add(i)
    return torch.tensor(sorted(bad), dtype=torch.long)


def word_token_ids(tokenizer: PreTrainedTokenizerBase, banned: set[int]) -> list[int]:
    """Allowed word tokens (" word"): triggers drawn from them read as text and round-trip (GCG restarts)."""
    words = []
    for i in range(len(tokenizer)):
        s = tokenizer.decode([i])
        if i not in banned and len(s) > 1 and s[0] == " " and s[1:].isalpha():
            words.append(i)
    if not words:
        raise ValueError("the tokenizer has no allowed word token (' word') to draw a trigger from")
    return words


def single_token_id(tokenizer: PreTrainedTokenizerBase, candidates: list[str], banned: set[int]) -> int:
    """First of `candidates` that is exactly one allowed token (used to initialize triggers)."""
    for text in candidates:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] not in banned:
            return ids[0]
    for i in range(len(tokenizer)):
        if i not in banned:
            return i
    raise ValueError("the tokenizer has no allowed token to initialize a trigger with")


# ----------------------------------------------------------------------------------------- target loss
def target_loss_from_hidden(
    model: PreTrainedModel, hidden: torch.Tensor, target_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean target NLL and all-argmax success per row, from the hidden states that predict the target.

    hidden: (B, n_target, d) -- the states at positions [start-1, ..., end-2] of the target.
    Only these rows go through the LM head: on a small model the head is a quarter of the FLOPs.
    Returns loss (B,), success (B,) bool.
    """
    logits = model.get_output_embeddings()(hidden).float()  # (B, n_target, V)
    logp = torch.log_softmax(logits, dim=-1)
    tgt = target_ids[None].expand(hidden.shape[0], -1)  # (B, n_target)
    nll = -logp.gather(-1, tgt[..., None]).squeeze(-1)  # (B, n_target)
    success = (logits.argmax(-1) == tgt).all(-1)
    return nll.mean(-1), success


def trigger_perplexity(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, context_ids: torch.Tensor, trigger_ids: torch.Tensor
) -> float:
    """exp(mean NLL) of the trigger tokens given the text before them (eos as context when there is none):
    how natural the found trigger reads to the frozen model."""
    if context_ids.numel() == 0:
        context_ids = torch.tensor([tokenizer.eos_token_id], device=trigger_ids.device)
    ids = torch.cat([context_ids, trigger_ids])[None]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, context_ids.numel() - 1 : -1].float()
    nll = torch.nn.functional.cross_entropy(logits, trigger_ids)
    return float(torch.exp(nll))
