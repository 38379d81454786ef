"""Which input positions move the target's log-prob: gradients and ablations, weights frozen.

    python -m pipelines steer --config configs/demo.yaml      # writes sensitivity.png per example

Four views per prompt token, each answering "how does changing the input here change the output?":
  grad_norm     ||d log p(target) / d e_i||   (first-order sensitivity to the embedding e_i)
  grad_x_input  (d log p(target) / d e_i) . e_i  (first-order change if e_i were set to zero)
  ablate_replace  log p(target) - log p(target | token i replaced by a filler token)   (exact)
  ablate_delete   log p(target) - log p(target | token i deleted)                       (exact)
The two ablations are batched: every variant of a prompt has the same length, so one forward covers all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.goals.common import encode, frozen, target_ids_of


class SensitivityConfig(BaseModel):
    """Settings of the sensitivity map."""

    model_config = ConfigDict(extra="forbid")

    replace_with: str = Field(
        "pad", description="Filler for the replace ablation: 'pad', 'unk' (falls back to pad) or 'eos'."
    )
    batch_size: int = Field(64, ge=1, description="Ablated variants per forward pass.")


@dataclass
class SensitivityMap:
    """Per-position scores over the prompt tokens (each a (T,) tensor); positive = supports the target."""

    tokens: list[str]
    target: str
    logprob: float
    grad_norm: torch.Tensor
    grad_x_input: torch.Tensor
    ablate_replace: torch.Tensor
    ablate_delete: torch.Tensor

    def rows(self) -> dict[str, torch.Tensor]:
        return {
            "grad_norm": self.grad_norm,
            "grad_x_input": self.grad_x_input,
            "ablate_replace": self.ablate_replace,
            "ablate_delete": self.ablate_delete,
        }


def _filler_id(tokenizer: PreTrainedTokenizerBase, which: str) -> int:
    ids = {"pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id, "eos": tokenizer.eos_token_id}
    if which not in ids:
        raise ValueError(f"replace_with must be pad|unk|eos, got {which!r}")
    tid = ids[which] if ids[which] is not None else tokenizer.pad_token_id
    if tid is None:
        raise ValueError(f"the tokenizer has no {which} (nor pad) token for the replace ablation")
    return tid


@torch.no_grad()
def _target_logprob(model: PreTrainedModel, prompts: torch.Tensor, target: torch.Tensor, bs: int) -> torch.Tensor:
    """log p(target | prompt) summed over target tokens for each row of prompts (B, T): (B,)."""
    out = []
    nt = target.numel()
    for i in range(0, prompts.shape[0], bs):
        p = prompts[i : i + bs]
        ids = torch.cat([p, target[None].expand(p.shape[0], -1)], dim=1)
        logits = model(input_ids=ids).logits[:, -nt - 1 : -1].float()  # (b, nt, V)
        lp = torch.log_softmax(logits, -1).gather(-1, target[None, :, None].expand(p.shape[0], -1, 1))
        out.append(lp.squeeze(-1).sum(-1))
    return torch.cat(out)


def sensitivity_map(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    target: str | int | list[int],
    config: SensitivityConfig | None = None,
) -> SensitivityMap:
    """Gradient and ablation scores of every prompt position for log p(target | prompt)."""
    cfg = config or SensitivityConfig()
    with frozen(model):
        ids = encode(tokenizer, prompt).to(model.device)  # (T,)
        tgt = target_ids_of(tokenizer, target).to(model.device)  # (nt,)
        T, nt = ids.numel(), tgt.numel()
        if T < 2:
            raise ValueError("prompt must have at least 2 tokens for a sensitivity map")
        emb = model.get_input_embeddings()
        # 1. gradient of log p(target) w.r.t. each input embedding
        e = emb(torch.cat([ids, tgt[:-1]])).detach().requires_grad_(True)  # (T + nt - 1, d)
        logits = model(inputs_embeds=e[None]).logits[0, T - 1 : T - 1 + nt].float()  # (nt, V)
        logprob = torch.log_softmax(logits, -1).gather(-1, tgt[:, None]).sum()
        (g,) = torch.autograd.grad(logprob, e)
        g, ev = g[:T], e[:T].detach()  # prompt positions only
        # 2. replace ablation: row i has token i swapped for the filler -> (T, T)
        rep = ids.repeat(T, 1)
        rep.fill_diagonal_(_filler_id(tokenizer, cfg.replace_with))
        # 3. delete ablation: row i is the prompt without token i -> (T, T-1)
        keep = ~torch.eye(T, dtype=torch.bool, device=ids.device)
        dele = ids.repeat(T, 1)[keep].view(T, T - 1)
        base = float(logprob.detach())
        lp_rep = _target_logprob(model, rep, tgt, cfg.batch_size)
        lp_del = _target_logprob(model, dele, tgt, cfg.batch_size)
    return SensitivityMap(
        tokens=[tokenizer.decode([t]) for t in ids.tolist()],
        target=tokenizer.decode(tgt.tolist()),
        logprob=base,
        grad_norm=g.norm(dim=-1).cpu(),
        grad_x_input=(g * ev).sum(-1).cpu(),
        ablate_replace=(base - lp_rep).cpu(),
        ablate_delete=(base - lp_del).cpu(),
    )


def plot_sensitivity(smap: SensitivityMap, path: str | Path, max_tokens: int = 160) -> Path:
    """Heat map PNG: one row per score (each row scaled to its own max |value|), columns = prompt tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = smap.rows()
    toks = smap.tokens[-max_tokens:]  # the end of the prompt is where most of the effect sits
    data = torch.stack([r[-max_tokens:] / r[-max_tokens:].abs().max().clamp(min=1e-12) for r in rows.values()])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.18 * len(toks)), 2.6))
    ax.imshow(data.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_yticks(range(len(rows)), list(rows))
    labels = [t.replace("\n", "\\n") for t in toks]
    ax.set_xticks(range(len(toks)), labels, rotation=90, fontsize=6)
    ax.set_title(f"sensitivity of log p({smap.target!r}) = {smap.logprob:.2f} to each prompt token", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
