"""Shared-prompt pair batching: one sequence per preference pair, the prompt computed once.

TRL's `RewardTrainer` runs every pair as two rows, `prompt + chosen` and `prompt + rejected`, so the prompt
(most of the tokens in TL;DR data: ~150 prompt tokens and ~35 response tokens here, ~500 and ~50 in
Stiennon et al.'s data) goes through the model twice. Here a pair is one row,

    [shared prefix] [chosen suffix] [rejected suffix]
    positions: 0 .. p-1, p .. p+c-1, p .. p+r-1

with a 4D attention mask that lets the rejected suffix see the prefix and itself but not the chosen suffix.
The shared prefix is the longest common prefix of the two *token* sequences the ordinary path already builds
(`reward_model.encoding`), so every score is the same number the two-row path computes (a test checks,
to float tolerance), while each pair costs p + c + r tokens instead of 2 (p + max(c, r)).

Limits (each refused with a clear error; `reward.batching: auto` falls back to two rows instead): decoder
reward models with a per-token `score` head only (GPT-2, Llama, Pythia, Qwen...), since encoder models pool
[CLS] and see the whole row; the sdpa or eager attention kernels only, since flash-attention and flex kernels
take no arbitrary 4D mask.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from transformers import PreTrainedModel
from trl import RewardTrainer


def shared_prefix_length(a: list[int], b: list[int]) -> int:
    """Length of the common token prefix of `a` and `b`, leaving each side at least one token of its own
    (the token its score is read at)."""
    n, limit = 0, min(len(a), len(b)) - 1
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def packed_length(chosen_ids: list[int], rejected_ids: list[int]) -> int:
    """Tokens the pair costs as one shared-prompt row: prefix + chosen suffix + rejected suffix."""
    return len(chosen_ids) + len(rejected_ids) - shared_prefix_length(chosen_ids, rejected_ids)


@dataclass
class SharedPromptCollator:
    """`chosen_ids` / `rejected_ids` examples -> one right-padded row per pair.

    Returns input_ids and position_ids [B, T], a boolean attention mask [B, 1, T, T] (True = may attend),
    `chosen_index` / `rejected_index` [B] (where each side's score is read: its last token), `n_tokens` (real
    tokens in the batch), and `margin` [B] when the examples carry one.
    """

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = []
        for ex in examples:
            c, r = list(ex["chosen_ids"]), list(ex["rejected_ids"])
            p = shared_prefix_length(c, r)
            rows.append((c, r[p:], p))
        T = max(len(c) + len(r_suffix) for c, r_suffix, _ in rows)
        B = len(rows)
        input_ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((B, T), dtype=torch.long)
        mask = torch.zeros((B, 1, T, T), dtype=torch.bool)
        chosen_index = torch.empty(B, dtype=torch.long)
        rejected_index = torch.empty(B, dtype=torch.long)
        for i, (c, r_suffix, p) in enumerate(rows):
            nc, n = len(c), len(c) + len(r_suffix)
            input_ids[i, :n] = torch.tensor(c + r_suffix, dtype=torch.long)
            position_ids[i, :nc] = torch.arange(nc)
            position_ids[i, nc:n] = torch.arange(p, p + len(r_suffix))
            block = torch.ones(n, n, dtype=torch.bool).tril()
            block[nc:, p:nc] = False  # the rejected suffix never sees the chosen suffix
            mask[i, 0, :n, :n] = block
            # Pad queries attend to the first token only: a fully masked row would give NaN in some kernels.
            mask[i, 0, n:, 0] = True
            chosen_index[i], rejected_index[i] = nc - 1, n - 1
        out = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": position_ids,
            "chosen_index": chosen_index,
            "rejected_index": rejected_index,
            "n_tokens": torch.tensor(sum(len(c) + len(rs) for c, rs, _ in rows)),
        }
        if examples and "margin" in examples[0]:
            out["margin"] = torch.tensor([float(ex["margin"]) for ex in examples], dtype=torch.float)
        return out


def _unwrap(model: nn.Module) -> nn.Module:
    inner = model
    while hasattr(inner, "module") and isinstance(inner.module, nn.Module):  # DDP / DeepSpeed engines
        inner = inner.module
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    return inner


def unsupported_reason(model: nn.Module) -> str | None:
    """Why `model` cannot train on shared-prompt rows, or None when it can."""
    inner = _unwrap(model)
    if not isinstance(getattr(inner, "score", None), nn.Module):
        return f"{type(inner).__name__} has no per-token `score` head (encoder models pool [CLS])"
    attn = _attn_implementation(inner)
    if attn not in ("sdpa", "eager"):
        return f"its attention kernel {attn!r} takes no 4D mask (load it with attn_implementation='sdpa')"
    return None


def _attn_implementation(model: nn.Module) -> str:
    return getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager"


def model_mask(model: nn.Module, allowed: torch.Tensor) -> torch.Tensor:
    """The collator's boolean mask in the form the model's attention kernel adds or applies: sdpa takes it
    as is, eager adds it (0 where allowed, the dtype's minimum elsewhere)."""
    inner = _unwrap(model)
    if _attn_implementation(inner) == "sdpa":
        return allowed
    dtype = next(inner.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def resolve_batching(batching: str, model: nn.Module) -> str:
    """`reward.batching` for this model: `auto` -> shared_prompt when the model supports it, else pairs; a forced
    shared_prompt on a model that cannot take it raises here, before any tokenizing."""
    if batching == "auto":
        return "pairs" if unsupported_reason(model) else "shared_prompt"
    if batching == "shared_prompt":
        score_head(model)
    return batching


def score_head(model: nn.Module) -> nn.Module:
    """The per-token `score` head under any wrapper (DDP, accelerate, peft); a clear error when unusable."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"reward.batching='shared_prompt' needs a decoder reward model: {reason}; "
                         f"set reward.batching: pairs")
    return _unwrap(model).score


@contextlib.contextmanager
def per_token_scores(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Capture the score head's per-token output ([B, T, 1]) during a forward through the *wrapped* model,
    so DDP and DeepSpeed see an ordinary forward (their gradient hooks depend on it)."""
    captured: dict[str, torch.Tensor] = {}
    handle = score_head(model).register_forward_hook(lambda _m, _i, out: captured.__setitem__("scores", out))
    try:
        yield captured
    finally:
        handle.remove()


def pair_rewards(model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) rewards [B] of a `SharedPromptCollator` batch."""
    with per_token_scores(model) as captured:
        model(
            input_ids=inputs["input_ids"],
            attention_mask=model_mask(model, inputs["attention_mask"]),
            position_ids=inputs["position_ids"],
            use_cache=False,
        )
    scores = captured["scores"].squeeze(-1)  # [B, T]
    rows = torch.arange(scores.shape[0], device=scores.device)
    return scores[rows, inputs["chosen_index"]], scores[rows, inputs["rejected_index"]]


class SharedPromptRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with shared-prompt rows: the same loss (-logsigmoid(r_c - r_r [- margin]) [+ the
    centering term]) and the same logged metrics; only how a pair reaches the model differs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        model = kwargs.get("model", args[0] if args else None)
        if isinstance(model, PreTrainedModel):
            score_head(model)  # fail before training, not at the first step
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        chosen, rejected = pair_rewards(model, inputs)
        diff = chosen - rejected - inputs["margin"] if "margin" in inputs else chosen - rejected
        loss = -nn.functional.logsigmoid(diff).mean()
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)

        if mode == "train":
            n_tokens = self.accelerator.gather_for_metrics(inputs["n_tokens"].reshape(1)).sum().item()
            self._total_train_tokens += n_tokens // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            both = self.accelerator.gather(torch.cat([chosen, rejected]).detach())
            self._metrics[mode]["min_reward"].append(both.min().item())
            self._metrics[mode]["mean_reward"].append(both.mean().item())
            self._metrics[mode]["max_reward"].append(both.max().item())
            acc = self.accelerator.gather_for_metrics((chosen > rejected).float().mean()).mean().item()
            self._metrics[mode]["accuracy"].append(acc)
            margin = self.accelerator.gather_for_metrics((chosen - rejected).mean()).mean().item()
            self._metrics[mode]["margin"].append(margin)
        if return_outputs:
            return loss, {"logits": torch.stack([chosen, rejected], dim=-1)}
        return loss
