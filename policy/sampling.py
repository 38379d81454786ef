"""Batched sampling and scoring of responses under a causal LM, shared by PPO, best-of-n, steering and eval.

Two rules hold everywhere here (Huang et al. 2024, N+ implementation details):
- Prompts are LEFT-padded and every forward pass gets `position_ids = cumsum(attention_mask) - 1`, so
  absolute-position models (GPT-2) see a padded prompt exactly as they would see it unpadded.
- Logits are divided by the sampling temperature before every log-softmax, in rollouts and in training,
  so the log-probs PPO optimizes are those of the distribution that produced the samples.

Sampling draws exactly `response_length` new tokens (no early stop), then everything after the first EOS
is replaced by pad; responses that never emit EOS are flagged (`has_eos`) for the missing-EOS penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.rl_utils import entropy_from_logits, logprobs_from_logits, truncate_after_eos


@dataclass
class Generation:
    """A batch of sampled responses; B prompts, Q prompt tokens (left-padded), R response tokens."""

    query_ids: torch.Tensor  # [B, Q] left-padded prompt ids
    query_mask: torch.Tensor  # [B, Q] 1 on real prompt tokens
    response_ids: torch.Tensor  # [B, R] truncated after the first EOS (EOS kept), pad after
    response_mask: torch.Tensor  # [B, R] bool, True up to and including the first EOS
    has_eos: torch.Tensor  # [B] bool
    logprobs: torch.Tensor  # [B, R] log p(token) at the sampling temperature, 0 on padding
    texts: list[str]  # decoded responses, special tokens (EOS, pad) removed


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: the first real token is position 0 (else GPT-2 scores shift)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _positions_from_mask_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Forward pre-hook: `position_ids` from the 2-D attention mask when the caller passed none."""
    if kwargs.get("position_ids") is not None:
        return None
    mask = kwargs.get("attention_mask")
    tokens = kwargs.get("input_ids", args[0] if args else None)
    if tokens is None:
        tokens = kwargs.get("inputs_embeds")
    if mask is None or mask.dim() != 2 or tokens is None:
        return None
    # With a KV cache the mask covers the cached tokens too; the new tokens are its last columns.
    kwargs["position_ids"] = position_ids_from_mask(mask)[:, -tokens.shape[1] :]
    return args, kwargs


def use_mask_positions(model: torch.nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Make `model` derive position ids from the attention mask whenever a caller gives none.

    For trainers we do not write (TRL 1.16's GRPO/RLOO score completions from `input_ids` + `attention_mask`):
    without it GPT-2 reads a left-padded prompt at arange positions `generate` did not use, and trains on
    log-probs that are not its sampler's. Callers that pass position ids are untouched.
    """
    return model.register_forward_pre_hook(_positions_from_mask_hook, with_kwargs=True)


def left_pad_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], max_prompt_length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize and left-pad `prompts` -> (ids [B, Q], mask [B, Q]); over-long prompts keep their END
    (the `TL;DR:` cue), whatever the tokenizer's own padding/truncation side."""
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token: load it with policy.models.load_tokenizer")
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if max_prompt_length is not None:
        encoded = [ids[-max_prompt_length:] for ids in encoded]
    width = max(len(ids) for ids in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, seq in enumerate(encoded):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
    return ids, mask


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    response_length: int,
    temperature: float,
    eos_token_id: int,
    pad_token_id: int,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Generation:
    """Sample exactly `response_length` tokens per prompt with a KV cache (pure sampling: no top-k/top-p;
    temperature 0 is greedy), then truncate after the first EOS.

    Our own loop instead of `model.generate` so the position ids, temperature and log-probs are exactly
    the ones PPO trains with, and no logits processor or early stop hides in between.
    """
    device = next(model.parameters()).device
    query_ids, query_mask = query_ids.to(device), query_mask.to(device)
    attention_mask = query_mask.clone()
    positions = position_ids_from_mask(attention_mask)  # [B, Q]
    input_ids, past = query_ids, None
    tokens, logprobs = [], []
    for _ in range(response_length):
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            cache=past,  # transformers 5 renamed past_key_values -> cache
            use_cache=True,
            logits_to_keep=1,  # only the last position's logits are needed
        )
        past = out.cache
        logits = out.logits[:, -1, :].float()  # [B, V]
        if temperature > 0:
            logits = logits / temperature
            next_token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)  # [B, 1]
        else:
            next_token = logits.argmax(-1, keepdim=True)
        tokens.append(next_token)
        logprobs.append(logprobs_from_logits(logits, next_token.squeeze(-1)))
        # 1 new token per row: extend the mask and advance each row's own position.
        attention_mask = torch.cat([attention_mask, torch.ones_like(next_token)], dim=1)
        positions = positions[:, -1:] + 1
        input_ids = next_token
    raw = torch.cat(tokens, dim=1)  # [B, R]
    response_ids, response_mask, has_eos = truncate_after_eos(raw, eos_token_id, pad_token_id)
    token_logprobs = torch.stack(logprobs, dim=1) * response_mask  # [B, R]
    texts = tokenizer.batch_decode(response_ids, skip_special_tokens=True) if tokenizer is not None else []
    return Generation(query_ids, query_mask, response_ids, response_mask, has_eos, token_logprobs, texts)


def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    response_length: int,
    temperature: float = 1.0,
    max_prompt_length: int | None = None,
    batch_size: int | None = None,
) -> list[Generation]:
    """Convenience: strings in, one `Generation` per chunk of `batch_size` prompts out."""
    batch_size = batch_size or len(prompts)
    chunks = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = left_pad_prompts(tokenizer, prompts[start : start + batch_size], max_prompt_length)
        chunks.append(
            generate(
                model, ids, mask, response_length, temperature, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer
            )
        )
    return chunks


def concat_query_response(
    query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) [B, Q+R] for a forward pass over prompt + response.

    Response padding sits after the EOS, so causal attention keeps it from touching any real token; it
    stays unmasked so positions remain contiguous.
    """
    input_ids = torch.cat([query_ids, response_ids], dim=1)
    attention_mask = torch.cat([query_mask, torch.ones_like(response_ids)], dim=1)
    return input_ids, attention_mask, position_ids_from_mask(attention_mask)


def response_logits(
    model: PreTrainedModel, query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Temperature-scaled logits [B, R, V] that predict each response token (the last Q-1.. positions)."""
    input_ids, attention_mask, position_ids = concat_query_response(query_ids, query_mask, response_ids)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    q = query_ids.size(1)
    logits = logits[:, q - 1 : -1]  # [B, R, V]: position q-1+t predicts response token t
    return logits / temperature if temperature > 0 else logits


def forward_logprobs(
    model: PreTrainedModel,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs [B, R] of given responses under `model` (policy or reference), 0 on padding.

    Same position-id and temperature rules as `generate`, so sampling and scoring agree.
    """
    logits = response_logits(model, query_ids, query_mask, response_ids, temperature)
    logprobs = logprobs_from_logits(logits, response_ids)
    mask = response_mask.to(logprobs.dtype) if response_mask is not None else torch.ones_like(logprobs)
    if return_entropy:
        return logprobs * mask, entropy_from_logits(logits) * mask
    return logprobs * mask
