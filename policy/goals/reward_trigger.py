"""Reward triggers: a trigger (k tokens, or k soft embeddings) that makes the frozen SFT policy's sampled
summaries score higher under a reward function, judged on held-out posts.

    python -m pipelines steer --config configs/demo.yaml      # the steering stage calls run

The reward is a function of sampled text, so there is no pathwise gradient; the score-function
(REINFORCE) estimator gives one for whatever shapes the input:
    grad E_y[r(x, y)] = E_y[(r - b) grad log pi(y | x + trigger)],   b = leave-one-out mean over the post's samples
soft     Adam on the trigger embeddings with that gradient.
discrete the same gradient taken w.r.t. the trigger's one-hot indicators ranks token swaps (as in GCG);
         a few candidate triggers are then scored by sampled rewards on the same posts with the same
         random numbers (common random numbers cut the variance of the comparison), the best is kept.
The reward model sees the *unsteered* prompt: the trigger changes what the policy writes, not what is judged.
Held-out report: reward and optional gold (steered vs unsteered) and KL(steered || SFT on the unsteered
prompt) estimated on the steered samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.goals.common import (
    LogFn,
    Position,
    RewardFn,
    encode,
    frozen,
    not_allowed_token_ids,
    single_token_id,
    split_prompt,
)
from policy.goals.gcg import GCGConfig, retokenization_filter, sample_candidates
from policy.rl_utils import logprobs_from_logits, truncate_after_eos
from policy.sampling import forward_logprobs

GoldFn = Callable[[str, str], float]


class RewardTriggerConfig(BaseModel):
    """Settings of reward-trigger search."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["discrete", "soft"] = Field("discrete", description="Token trigger or soft embeddings.")
    n_tokens: int = Field(5, ge=1, description="Trigger length k.")
    position: Position = Field("before_tldr", description="Where the trigger goes: prefix, before_tldr or suffix.")
    steps: int = Field(10, ge=1, description="Optimization steps.")
    posts_per_step: int = Field(4, ge=1, description="Training posts sampled per step.")
    samples_per_post: int = Field(4, ge=2, description="Summaries sampled per post (>= 2 for the baseline).")
    response_length: int = Field(24, ge=1, description="Tokens sampled per summary.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (log-probs use the same).")
    topk: int = Field(32, ge=1, description="Discrete: swap tokens per position from the gradient ranking.")
    n_candidates: int = Field(6, ge=1, description="Discrete: candidate triggers scored by sampled rewards per step.")
    lr: float = Field(0.05, gt=0, description="Soft: Adam learning rate on the trigger embeddings.")
    init_token: str = Field(" x", description="Token repeated k times to initialize the trigger.")
    eval_samples_per_post: int = Field(2, ge=1, description="Summaries per held-out post in the evaluation.")
    seed: int = Field(0, description="Seed of sampling and candidate draws.")
    show_progress: bool = Field(False, description="Show a tqdm bar over steps.")


@dataclass
class HeldoutReport:
    """Steered vs unsteered on held-out posts."""

    n_posts: int
    reward_steered: float
    reward_unsteered: float
    gold_steered: float | None
    gold_unsteered: float | None
    kl: float  # mean over samples of sum_t [log pi(y_t | x+trigger) - log pi(y_t | x)]


@dataclass
class RewardTriggerResult:
    trigger_ids: list[int] | None  # discrete mode
    trigger: str | None
    soft_embeds: torch.Tensor | None  # soft mode: (k, d)
    seconds: float
    heldout: HeldoutReport | None = None
    history: list[dict[str, float]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- sampling with embeddings
def pre_embeds(model: PreTrainedModel, before: torch.Tensor, trig_emb: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Prompt embeddings with the trigger in its slot: (L, d)."""
    emb = model.get_input_embeddings()
    return torch.cat([emb(before), trig_emb, emb(after)])


@torch.no_grad()
def sample_from_embeds(
    model: PreTrainedModel, pre: torch.Tensor, n: int, cfg: RewardTriggerConfig, tok: PreTrainedTokenizerBase, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n summaries of one prompt given as embeddings (L, d): ids (n, R) truncated after EOS, mask (n, R).

    `policy.sampling.generate` takes ids; a soft trigger has no ids, so this small loop feeds embeddings
    for the prompt and ids afterwards (one prompt, n rows: no padding, positions follow the cache).
    """
    out = model(inputs_embeds=pre[None].expand(n, -1, -1), use_cache=True, logits_to_keep=1)
    toks = []
    for _ in range(cfg.response_length):
        probs = torch.softmax(out.logits[:, -1].float() / cfg.temperature, -1)  # (n, V)
        nxt = torch.multinomial(probs, 1, generator=gen)  # (n, 1)
        toks.append(nxt)
        out = model(input_ids=nxt, cache=out.cache, use_cache=True)
    ids, mask, _ = truncate_after_eos(torch.cat(toks, 1), tok.eos_token_id, tok.pad_token_id)
    return ids, mask


def response_logprob(model: PreTrainedModel, pre: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, temp: float) -> torch.Tensor:
    """sum_t log pi(y_t | prompt embeddings, y_<t): (n,), differentiable w.r.t. `pre`."""
    n, R = ids.shape
    x = torch.cat([pre[None].expand(n, -1, -1), model.get_input_embeddings()(ids[:, :-1])], 1)  # (n, L+R-1, d)
    logits = model(inputs_embeds=x).logits[:, pre.shape[0] - 1 :] / temp  # (n, R, V)
    return (logprobs_from_logits(logits, ids) * mask).sum(-1)


class PostParts:
    """Prompts split around the trigger slot, tokenized once."""

    def __init__(self, tok: PreTrainedTokenizerBase, prompts: list[str], position: Position, device: torch.device):
        self.prompts = prompts
        parts = [split_prompt(p, position) for p in prompts]
        self.before = [encode(tok, b).to(device) for b, _ in parts]
        self.after = [encode(tok, a).to(device) for _, a in parts]


def _rewards(tok, reward_fn: RewardFn, prompt: str, ids: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    texts = tok.batch_decode(ids, skip_special_tokens=True)
    r = torch.as_tensor(reward_fn([prompt] * len(texts), texts), dtype=torch.float32).reshape(-1)
    if r.shape[0] != len(texts):
        raise ValueError(f"reward_fn returned {r.shape[0]} scores for {len(texts)} responses")
    return r, texts


def _mean_reward(model, tok, reward_fn, posts: PostParts, idx: list[int], trig_emb, cfg, seed: int) -> float:
    """Mean sampled reward of a trigger over posts `idx`, with a fixed seed (common random numbers)."""
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in idx:
        ids, _ = sample_from_embeds(model, pre_embeds(model, posts.before[i], trig_emb, posts.after[i]), cfg.samples_per_post, cfg, tok, gen)
        total += float(_rewards(tok, reward_fn, posts.prompts[i], ids)[0].mean())
    return total / len(idx)


# ----------------------------------------------------------------------------------------- the search
def run(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_prompts: list[str],
    heldout_prompts: list[str],
    reward_fn: RewardFn,
    config: RewardTriggerConfig | None = None,
    gold_fn: GoldFn | None = None,
    heldout_post_texts: list[str] | None = None,
    log: LogFn | None = None,
) -> RewardTriggerResult:
    """Optimize a trigger on `train_prompts` for higher sampled reward; report on `heldout_prompts`."""
    cfg = config or RewardTriggerConfig()
    if set(train_prompts) & set(heldout_prompts):
        raise ValueError("heldout_prompts overlap train_prompts: the report must be on held-out posts")
    if not train_prompts or not heldout_prompts:
        raise ValueError("train_prompts and heldout_prompts must both be non-empty")
    gen = torch.Generator().manual_seed(cfg.seed)
    with frozen(model):
        device = model.device
        W = model.get_input_embeddings().weight  # (V, d), frozen
        banned = not_allowed_token_ids(tokenizer).to(device)
        posts = PostParts(tokenizer, train_prompts, cfg.position, device)
        init = single_token_id(tokenizer, [cfg.init_token, " the", "."], set(banned.tolist()))
        trigger = torch.full((cfg.n_tokens,), init, dtype=torch.long, device=device)
        P = W[trigger].detach().clone().requires_grad_(cfg.mode == "soft")  # (k, d) soft embeddings
        opt = torch.optim.Adam([P], lr=cfg.lr) if cfg.mode == "soft" else None
        gcfg = GCGConfig(n_tokens=cfg.n_tokens, search_width=cfg.n_candidates, topk=cfg.topk, seed=cfg.seed)
        history: list[dict[str, float]] = []
        t0 = time.perf_counter()
        for step in tqdm(range(1, cfg.steps + 1), desc=f"reward-{cfg.mode}", disable=not cfg.show_progress):
            idx = torch.randperm(len(train_prompts), generator=gen)[: cfg.posts_per_step].tolist()
            onehot = None
            if cfg.mode == "discrete":
                onehot = torch.nn.functional.one_hot(trigger, W.shape[0]).to(W.dtype).requires_grad_(True)
            rewards = []
            for i in idx:
                trig_emb = P if onehot is None else onehot @ W  # (k, d), a fresh graph per post
                # 1. sample summaries with the current trigger
                pre = pre_embeds(model, posts.before[i], trig_emb, posts.after[i])
                ids, mask = sample_from_embeds(model, pre.detach(), cfg.samples_per_post, cfg, tokenizer, gen)
                r, _ = _rewards(tokenizer, reward_fn, posts.prompts[i], ids)
                # 2. leave-one-out baseline, then the REINFORCE surrogate (its gradient is the estimator)
                b = (r.sum() - r) / (r.numel() - 1)
                logp = response_logprob(model, pre, ids, mask, cfg.temperature)
                (-((r - b).to(logp.device) * logp).mean() / len(idx)).backward()
                rewards.append(float(r.mean()))
            row = {"reward_trigger/reward": sum(rewards) / len(rewards)}
            if opt is not None:
                # 3a. soft: one Adam step on the embeddings
                opt.step()
                opt.zero_grad()
            else:
                # 3b. discrete: swaps ranked by the surrogate gradient, scored by sampled reward (same seed)
                with torch.no_grad():
                    cands = retokenization_filter(tokenizer, sample_candidates(trigger, onehot.grad, gcfg, banned, gen))
                    cands = torch.unique(cands, dim=0)
                    seed = int(torch.randint(2**31, (1,), generator=gen))
                    scores = [_mean_reward(model, tokenizer, reward_fn, posts, idx, W[c], cfg, seed) for c in cands]
                    here = _mean_reward(model, tokenizer, reward_fn, posts, idx, W[trigger], cfg, seed)
                    if scores and max(scores) > here:
                        trigger = cands[int(torch.tensor(scores).argmax())].clone()
                    row["reward_trigger/candidate_best"] = max(scores, default=here)
            history.append(row)
            if log is not None:
                log(row, step)
        seconds = time.perf_counter() - t0
        final = P.detach() if cfg.mode == "soft" else W[trigger].detach()
        report = evaluate_heldout(model, tokenizer, heldout_prompts, final, reward_fn, cfg, gold_fn, heldout_post_texts)
    return RewardTriggerResult(
        trigger_ids=trigger.tolist() if cfg.mode == "discrete" else None,
        trigger=tokenizer.decode(trigger) if cfg.mode == "discrete" else None,
        soft_embeds=P.detach().cpu() if cfg.mode == "soft" else None,
        seconds=seconds,
        heldout=report,
        history=history,
    )


@torch.no_grad()
def evaluate_heldout(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    trig_emb: torch.Tensor,
    reward_fn: RewardFn,
    cfg: RewardTriggerConfig,
    gold_fn: GoldFn | None = None,
    post_texts: list[str] | None = None,
) -> HeldoutReport:
    """Reward/gold steered vs unsteered, and KL(steered || SFT on the unsteered prompt), on `prompts`."""
    if post_texts is not None and len(post_texts) != len(prompts):
        raise ValueError(f"post_texts has {len(post_texts)} rows for {len(prompts)} held-out prompts")
    posts = PostParts(tokenizer, prompts, cfg.position, model.device)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n = cfg.eval_samples_per_post
    acc = {"rs": [], "ru": [], "gs": [], "gu": [], "kl": []}
    empty = trig_emb[:0]
    for i, prompt in enumerate(prompts):
        for key, emb_t in (("s", trig_emb), ("u", empty)):
            pre = pre_embeds(model, posts.before[i], emb_t, posts.after[i])
            ids, mask = sample_from_embeds(model, pre, n, cfg, tokenizer, gen)
            r, texts = _rewards(tokenizer, reward_fn, prompt, ids)
            acc["r" + key] += r.tolist()
            if gold_fn is not None:
                src = post_texts[i] if post_texts is not None else prompt
                acc["g" + key] += [float(gold_fn(src, t)) for t in texts]
            if key == "s":
                # KL estimate on steered samples: log pi(y | x + trigger) - log pi_SFT(y | x)
                lp_s = response_logprob(model, pre, ids, mask, cfg.temperature)
                q = encode(tokenizer, prompt).to(ids.device)[None].expand(n, -1)
                lp_u = forward_logprobs(model, q, torch.ones_like(q), ids, mask, cfg.temperature).sum(-1)
                acc["kl"] += (lp_s - lp_u).tolist()
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return HeldoutReport(len(prompts), mean(acc["rs"]), mean(acc["ru"]), mean(acc["gs"]), mean(acc["gu"]), mean(acc["kl"]))
