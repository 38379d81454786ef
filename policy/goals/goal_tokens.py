"""Goal tokens: condition the policy on how well a summary was received, then ask for the best bucket.

    python -m pipelines steer --config configs/demo.yaml      # goal-token SFT + per-bucket evaluation

Unlike the input-only methods beside it, this one trains (it is SFT with a control token, as in
CTRL / Quark, Lu et al. 2022): each TL;DR's upvotes become a percentile *within its subreddit* (raw
scores are not comparable across subreddits of different sizes), cut into K buckets; one special token
per bucket (`<|goal_0|>` .. `<|goal_{K-1}|>`) goes right after `TL;DR:`, and the model learns
`prompt + <|goal_b|> -> summary`. At inference the bucket is the knob: the question is whether reward and
gold rise monotonically with it.

    result = run(model, tok, prompts, completions, bucketize(scores, subreddits, 5), eval_prompts, reward_fn,
                 GoalTokenConfig(n_buckets=5))      # a GoalTokenResult: losses, per-bucket reward, Spearman
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.goals.common import LogFn, RewardFn
from policy.sampling import sample


class GoalTokenConfig(BaseModel):
    """Settings of goal-token conditioning."""

    model_config = ConfigDict(extra="forbid")

    n_buckets: int = Field(5, ge=2, description="K: upvote-percentile buckets, one special token each.")
    epochs: int = Field(1, ge=1, description="SFT epochs over the bucket-tagged rows.")
    lr: float = Field(5e-4, gt=0, description="AdamW learning rate of the small SFT loop.")
    batch_size: int = Field(8, ge=1, description="Rows per SFT step.")
    max_length: int = Field(512, ge=8, description="Rows longer than this (prompt+goal+summary+eos) keep their end.")
    response_length: int = Field(32, ge=1, description="Tokens sampled per summary at evaluation.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature at evaluation (0 = greedy).")
    seed: int = Field(0, description="Seed of shuffling and sampling.")
    show_progress: bool = Field(False, description="Show tqdm bars.")


def goal_token(bucket: int) -> str:
    return f"<|goal_{bucket}|>"


def bucketize(scores: list[float], subreddits: list[str], n_buckets: int) -> list[int]:
    """Bucket of each row: its score's percentile within its subreddit (mid-rank for ties), cut into K."""
    if len(scores) != len(subreddits):
        raise ValueError(f"scores has {len(scores)} rows but subreddits has {len(subreddits)}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(subreddits):
        groups[s].append(i)
    out = [0] * len(scores)
    for idx in groups.values():
        vals = [scores[i] for i in idx]
        n = len(vals)
        for i in idx:
            below = sum(v < scores[i] for v in vals)
            equal = sum(v == scores[i] for v in vals)
            pct = (below + 0.5 * equal) / n  # mid-rank percentile in (0, 1)
            out[i] = min(n_buckets - 1, int(math.floor(pct * n_buckets)))
    return out


def add_goal_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n_buckets: int) -> list[int]:
    """Add the K bucket tokens (special: never split, never produced by text) and resize the embeddings."""
    tokens = [goal_token(b) for b in range(n_buckets)]
    tokenizer.add_special_tokens({"additional_special_tokens": tokens})
    model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids(tokens)


def goal_prompt(prompt: str, bucket: int) -> str:
    """The prompt with the bucket token placed right after `TL;DR:`."""
    return prompt + goal_token(bucket)


def train_goal_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    completions: list[str],
    buckets: list[int],
    config: GoalTokenConfig | None = None,
    log: LogFn | None = None,
) -> list[float]:
    """SFT on `prompt + <|goal_b|> -> completion + eos`, loss on the completion only. Returns step losses."""
    cfg = config or GoalTokenConfig()
    if not (len(prompts) == len(completions) == len(buckets)):
        raise ValueError("prompts, completions and buckets must have the same length")
    rows = []
    for p, c, b in zip(prompts, completions, buckets):
        q = tokenizer(goal_prompt(p, b), add_special_tokens=False)["input_ids"]
        r = tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (q + r)[-cfg.max_length :]
        rows.append((ids, min(len(r), len(ids))))
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    model.train()
    losses, step = [], 0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(rows), generator=gen).tolist()
        for s in tqdm(range(0, len(order), cfg.batch_size), desc="goal-sft", disable=not cfg.show_progress):
            batch = [rows[i] for i in order[s : s + cfg.batch_size]]
            width = max(len(ids) for ids, _ in batch)
            # right padding: positions start at 0 for every row, labels -100 on prompt and padding
            x = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            y = torch.full_like(x, -100)
            m = torch.zeros_like(x)
            for j, (ids, n_resp) in enumerate(batch):
                x[j, : len(ids)] = torch.tensor(ids)
                m[j, : len(ids)] = 1
                y[j, len(ids) - n_resp : len(ids)] = torch.tensor(ids[len(ids) - n_resp :])
            dev = model.device
            loss = model(input_ids=x.to(dev), attention_mask=m.to(dev), labels=y.to(dev)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            if log is not None:
                log({"goal/sft_loss": losses[-1]}, step)
    model.eval()
    return losses


@dataclass
class BucketReport:
    bucket: int
    reward: float
    gold: float | None


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation: is reward (or gold) monotonic in the conditioned bucket?"""
    rank = lambda v: [sorted(v).index(a) for a in v]  # noqa: E731 (ties: first rank, fine for K buckets)
    rx, ry = torch.tensor(rank(xs), dtype=torch.float), torch.tensor(rank(ys), dtype=torch.float)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / den if den else 0.0


@torch.no_grad()
def evaluate_buckets(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    reward_fn: RewardFn,
    config: GoalTokenConfig | None = None,
    gold_fn=None,
    post_texts: list[str] | None = None,
) -> tuple[list[BucketReport], float]:
    """Mean reward (and gold) of summaries generated under each bucket token; Spearman(bucket, reward).

    The reward model reads the prompt without the goal token: the token steers the writer, not the judge.
    """
    cfg = config or GoalTokenConfig()
    torch.manual_seed(cfg.seed)
    reports = []
    for b in range(cfg.n_buckets):
        gens = sample(model, tokenizer, [goal_prompt(p, b) for p in prompts], cfg.response_length, cfg.temperature)
        texts = [t for g in gens for t in g.texts]
        r = torch.as_tensor(reward_fn(prompts, texts), dtype=torch.float32)
        gold = None
        if gold_fn is not None:
            src = post_texts if post_texts is not None else prompts
            gold = sum(float(gold_fn(s, t)) for s, t in zip(src, texts)) / len(texts)
        reports.append(BucketReport(b, float(r.mean()), gold))
    rho = spearman([float(x.bucket) for x in reports], [x.reward for x in reports])
    return reports, rho


@dataclass
class GoalTokenResult:
    """What goal-token conditioning did: the tokens added, the SFT's step losses and seconds, and each bucket's
    mean reward (and gold) on the evaluation prompts with their rank correlation to the bucket."""

    token_ids: list[int]
    losses: list[float]
    seconds: float  # of the goal-conditioned SFT
    buckets: list[BucketReport]
    spearman_reward: float
    spearman_gold: float | None


def run(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    completions: list[str],
    buckets: list[int],
    eval_prompts: list[str],
    reward_fn: RewardFn,
    config: GoalTokenConfig | None = None,
    gold_fn=None,
    eval_post_texts: list[str] | None = None,
    log: LogFn | None = None,
) -> GoalTokenResult:
    """Add the bucket tokens to `model` and `tokenizer` (in place: pass copies to keep the originals), SFT on
    the tagged rows (`buckets` from `bucketize`), then sample every bucket on `eval_prompts`."""
    cfg = config or GoalTokenConfig()
    token_ids = add_goal_tokens(model, tokenizer, cfg.n_buckets)
    started = time.perf_counter()
    losses = train_goal_sft(model, tokenizer, prompts, completions, buckets, cfg, log)
    seconds = time.perf_counter() - started
    reports, rho = evaluate_buckets(model, tokenizer, eval_prompts, reward_fn, cfg, gold_fn, eval_post_texts)
    rho_gold = spearman([float(r.bucket) for r in reports], [r.gold for r in reports]) if gold_fn is not None else None
    return GoalTokenResult(token_ids, losses, seconds, reports, rho, rho_gold)
