"""Soft prompts: k free embedding vectors in the trigger slot, optimized for the GCG target, weights frozen;
then projected to their nearest real tokens to see how much of the effect survives as text.

    python -m pipelines steer --config configs/demo.yaml      # the steering stage calls run

Two modes (both Adam on the k x d trigger embeddings P):
  soft  continuous prompt tuning (Lester et al. 2021): the loss is taken at P itself; projection at the end.
  pez   hard prompts made easy (Wen et al. 2023): the loss is taken at Proj(P), the nearest-token embeddings,
        and its gradient is applied to P (straight-through), so the search stays near real tokens.
The gap between `soft_loss` and `projected_loss` measures what a continuous input can do that text cannot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.goals.common import (
    LogFn,
    Position,
    SteerCase,
    frozen,
    not_allowed_token_ids,
    prepare_case,
    single_token_id,
    target_loss_from_hidden,
)
from policy.goals.gcg import candidate_losses


class SoftPromptConfig(BaseModel):
    """Settings of soft-prompt / PEZ optimization."""

    model_config = ConfigDict(extra="forbid")

    n_tokens: int = Field(10, ge=1, description="Soft trigger length k (embedding vectors).")
    position: Position = Field("suffix", description="Where the soft trigger goes: prefix, before_tldr or suffix.")
    mode: Literal["soft", "pez"] = Field("pez", description="soft: continuous loss; pez: projected straight-through.")
    steps: int = Field(200, ge=1, description="Adam steps.")
    lr: float = Field(0.05, gt=0, description="Adam learning rate on the trigger embeddings.")
    init_token: str = Field(" x", description="Token whose embedding initializes every slot.")
    allow_non_ascii: bool = Field(False, description="Let the projection pick non-ASCII tokens.")
    early_stop: bool = Field(True, description="Stop once the projected trigger makes the target the argmax.")
    seed: int = Field(0, description="Seed of the small initialization noise.")
    show_progress: bool = Field(False, description="Show a tqdm bar over steps.")


@dataclass
class SoftPromptResult:
    """The soft trigger, its projection to tokens, and both losses."""

    soft_embeds: torch.Tensor  # (k, d)
    initial_loss: float
    soft_loss: float  # loss at the continuous embeddings
    soft_success: bool
    projected_ids: list[int]
    projected_text: str
    projected_loss: float  # loss at the nearest real tokens
    projected_success: bool
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _loss_at(
    model: PreTrainedModel, cases: list[SteerCase], trig_emb: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Mean target NLL over cases with trigger embeddings (k, d) in the slot; success fraction."""
    emb = model.get_input_embeddings()
    total, wins = 0.0, 0.0
    for case in cases:
        rest = emb(torch.cat([case.after_ids, case.target_ids[:-1]]))
        x = torch.cat([emb(case.uncached_before()), trig_emb, rest])[None]  # (1, L, d)
        hidden = model.base_model(inputs_embeds=x, cache=case.cache(1), use_cache=False).last_hidden_state
        loss, ok = target_loss_from_hidden(model, hidden[:, -case.target_ids.numel() :], case.target_ids)
        total = total + loss.sum() / len(cases)
        wins += float(ok) / len(cases)
    return total, wins


def project(weight: torch.Tensor, embeds: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
    """Nearest allowed token (L2) to each row of embeds (k, d): ids (k,)."""
    d = torch.cdist(embeds.detach()[None], weight[None])[0]  # (k, V)
    d[:, banned] = float("inf")
    return d.argmin(-1)


def run(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: str | list[str],
    target: str | int | list[int],
    config: SoftPromptConfig | None = None,
    log: LogFn | None = None,
) -> SoftPromptResult:
    """Optimize a soft trigger for `prompts`, then project it to real tokens."""
    cfg = config or SoftPromptConfig()
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError("prompts is empty")
    with frozen(model):
        W = model.get_input_embeddings().weight  # (V, d), frozen
        banned = not_allowed_token_ids(tokenizer, cfg.allow_non_ascii).to(W.device)
        cases = [prepare_case(model, tokenizer, p, target, cfg.position) for p in prompts]
        init = single_token_id(tokenizer, [cfg.init_token, " the", "."], set(banned.tolist()))
        gen = torch.Generator().manual_seed(cfg.seed)
        noise = 0.01 * W.std() * torch.randn(cfg.n_tokens, W.shape[1], generator=gen).to(W.device)
        P = (W[init].detach().repeat(cfg.n_tokens, 1) + noise).requires_grad_(True)  # (k, d)
        opt = torch.optim.Adam([P], lr=cfg.lr)
        with torch.no_grad():
            init_loss = float(_loss_at(model, cases, P)[0])
        history: list[dict[str, float]] = []
        t0 = time.perf_counter()
        for step in tqdm(range(1, cfg.steps + 1), desc=f"soft-{cfg.mode}", disable=not cfg.show_progress):
            # 1. nearest real tokens of the current embeddings
            ids = project(W, P, banned)
            if cfg.mode == "pez":
                # 2a. PEZ: loss at the projection, gradient passed straight through to P
                x = P + (W[ids] - P).detach()
            else:
                # 2b. prompt tuning: loss at P itself
                x = P
            loss, win = _loss_at(model, cases, x)
            opt.zero_grad()
            loss.backward()
            # 3. one Adam step on the trigger embeddings only (the model has no trainable parameter)
            opt.step()
            row = {"soft/loss": float(loss.detach()), "soft/success": win}
            history.append(row)
            if log is not None:
                log(row, step)
            # 4. stop when the projected tokens already win (exact check for pez, cheap to test)
            if cfg.early_stop and cfg.mode == "pez" and win >= 1.0:
                break
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            soft_loss, soft_win = _loss_at(model, cases, P)
            ids = project(W, P, banned)
            proj_loss, proj_win = candidate_losses(model, cases, ids[None])
    return SoftPromptResult(
        soft_embeds=P.detach().cpu(),
        initial_loss=init_loss,
        soft_loss=float(soft_loss),
        soft_success=soft_win >= 1.0,
        projected_ids=ids.tolist(),
        projected_text=tokenizer.decode(ids),
        projected_loss=float(proj_loss[0]),
        projected_success=bool(proj_win[0] >= 1.0),
        steps=len(history),
        seconds=seconds,
        history=history,
    )
