"""How a (prompt, response) becomes reward-model input, and how the score is read: one place for both.

Training (`reward_model/train.py`) and scoring (`reward_model/scoring.py`) import these functions, so a
response is tokenized, EOS-terminated, padded and read out identically in both. Three traps:

1. pad == eos: HF sequence-classification heads find "the last token" as the last id != pad_token_id, so a
   trailing EOS that equals pad is skipped and the token before it is read. We read the score at the last
   position of the *attention mask* instead, and refuse to train with pad == eos.
2. Left padding with absolute position embeddings (GPT-2, BERT) shifts every position unless position_ids
   are given: we always pass `position_ids = cumsum(attention_mask) - 1`.
3. Tokenizers without an EOS (BERT-style): TRL's string path crashes appending `None`; we tokenize
   ourselves (the tokenizer's own special tokens, e.g. [CLS] ... [SEP], end the sequence) and hand TRL
   pre-tokenized `chosen_ids` / `rejected_ids`.
"""

from __future__ import annotations

import inspect
from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

PaddingSide = Literal["right", "left"]


def _leading_special_count(ids: list[int], special_ids: set[int]) -> int:
    n = 0
    while n < len(ids) and ids[n] in special_ids:
        n += 1
    return n


def encode_prompt_response(
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    responses: list[str],
    max_length: int | None,
    append_eos: bool = True,
) -> tuple[list[list[int]], int]:
    """Token ids of `prompt + response` (+ EOS), and how many sequences were cut to `max_length`.

    The text is joined before tokenizing (as TRL does), with the tokenizer's own special tokens. EOS is
    appended when the tokenizer has one and the sequence does not already end with it. A sequence over
    `max_length` loses tokens from the *start of the prompt* (after any leading special token such as
    [CLS]), so the response and its EOS, where the score is read, always survive.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    texts = [p + r for p, r in zip(prompts, responses)]
    encoded = tokenizer(texts)["input_ids"]
    eos = tokenizer.eos_token_id if append_eos else None
    special = set(tokenizer.all_special_ids)
    out, n_cut = [], 0
    for ids in encoded:
        ids = list(ids)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        if max_length is not None and len(ids) > max_length:
            head = ids[: min(_leading_special_count(ids, special), max_length - 1)]
            ids = head + ids[len(ids) - (max_length - len(head)) :]
            n_cut += 1
        out.append(ids)
    return out, n_cut


def pad_batch(
    sequences: list[list[int]], pad_token_id: int, side: PaddingSide = "right"
) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence: input_ids, attention_mask and position_ids, each [batch, T]."""
    if pad_token_id is None:
        raise ValueError("the reward tokenizer has no pad token: set tokenizer.pad_token (distinct from eos)")
    T = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), T), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), T), dtype=torch.long)
    for i, seq in enumerate(sequences):
        sl = slice(0, len(seq)) if side == "right" else slice(T - len(seq), T)
        input_ids[i, sl] = torch.tensor(seq, dtype=torch.long)
        attention_mask[i, sl] = 1
    # Positions count real tokens only, so a left-padded row sees the same positions as a right-padded one.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


def _accepts(module: torch.nn.Module, arg: str) -> bool:
    return arg in inspect.signature(module.forward).parameters


def sequence_scores(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The scalar reward of each sequence: [batch], float32.

    Decoder reward models (a `score` head applied per token: GPT-2, Llama, Pythia, Qwen, ...) are read at
    the last real token of the attention mask, whatever the padding side and whatever pad_token_id is.
    Encoder models that pool the first token (BERT: `classifier` on [CLS]) return their pooled logit and
    need right padding.
    """
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if position_ids is None:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    head = getattr(model, "score", None)
    if isinstance(head, torch.nn.Module):
        body = model.base_model
        if _accepts(body, "position_ids"):
            kwargs["position_ids"] = position_ids
        hidden = body(**kwargs, use_cache=False).last_hidden_state  # [B, T, H]
        per_token = head(hidden).squeeze(-1)  # [B, T]
        # Index of the last real token: the largest position whose mask is 1 (works for left and right padding).
        T = attention_mask.shape[1]
        last = (torch.arange(T, device=attention_mask.device) * attention_mask).argmax(-1)  # [B]
        return per_token[torch.arange(per_token.shape[0], device=per_token.device), last].float()
    if (attention_mask[:, 0] == 0).any():
        raise ValueError(
            f"{type(model).__name__} pools its first token: score it with right padding (padding_side='right')"
        )
    if _accepts(model, "position_ids"):
        kwargs["position_ids"] = position_ids
    logits = model(**kwargs).logits  # [B, 1]
    return logits[:, 0].float()
