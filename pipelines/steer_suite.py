"""The steer stage's runner: every goal-conditioning method of `policy.goals` on one SFT policy, in one call.

    python -m pipelines steer --config configs/demo.yaml      # pipelines/stages/steer.py wires this

The methods themselves (each `Config` in, `Result` out) and the side-by-side evaluation of a method
(`policy.goals.side_by_side`) are library code; this module sizes, orders and records them.

Parts (each switchable and sized in `SteerStageConfig`):
  1. target   GCG "magic word" steering: k <= 10 tokens make a top-75 next token the argmax, per case
              (Bhargava et al. 2023: 97% for the correct next token, 85% for a top-75 one), within a budget.
  2. universal  one GCG trigger for many posts, judged on held-out posts only.
  3. soft     soft prompt and PEZ for the same (post, target) cases: how much of the effect survives as text.
  4. sensitivity  gradient/ablation heat map over one held-out prompt's tokens (PNG).
  5. goal     goal tokens: within-subreddit upvote buckets, a short goal-conditioned SFT of a COPY of the policy,
              reward/gold per bucket (Spearman), the top bucket as a side-by-side row.
  6. reward   reward triggers (discrete and soft) that raise the reward model's score of the frozen policy.
  7. weights  the SFT policy's fingerprint is checked after every input-only method (bit-identical).
The side-by-side rows are measured the same way for every method (`policy.goals.side_by_side`): the same
held-out posts, the same sampler (prompt embeddings in, `response_length` tokens out at `temperature`), reward
and gold against the post's reference TL;DR, and KL(method || SFT on the plain prompt) estimated on the
method's own samples.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.goals import gcg, goal_tokens, reward_trigger, sensitivity, soft_prompt
from policy.goals.gcg import GCGConfig
from policy.goals.goal_tokens import GoalTokenConfig
from policy.goals.reward_trigger import RewardTriggerConfig
from policy.goals.sensitivity import SensitivityConfig
from policy.goals.soft_prompt import SoftPromptConfig
from policy.goals.common import (
    LogFn,
    RewardFn,
    encode,
    frozen,
    not_allowed_token_ids,
    split_prompt,
    trigger_perplexity,
)
from policy.goals.side_by_side import (
    SideBySideEvalSection,
    WeightsGuard,
    Writer,
    evaluate_writer,
    ids_embeds,
    trigger_embeds,
)
from policy.device import place
from policy.evaluate import GoldFn, HeldOut, slug


# ----------------------------------------------------------------------------------------- config
class TargetSteeringSection(BaseModel):
    """Part 1: GCG target-token steering over many (post, target) cases."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run target-token steering.")
    n_cases: int = Field(100, ge=1, description="Requested (post, target) cases; fewer run if the budget ends first.")
    k: int = Field(10, ge=1, le=10, description="Trigger tokens per case (the magic-word setting uses <= 10).")
    top_n: int = Field(75, ge=2, description="Targets are drawn from the model's top-n next tokens (argmax excluded).")
    n_posts: int = Field(50, ge=1, description="Distinct held-out posts the cases cycle through.")
    time_budget_s: float | None = Field(
        None, gt=0, description="Stop starting new cases after this many seconds (None: run all n_cases); "
        "`steer/target_cases` says how many ran."
    )
    gcg: GCGConfig = Field(
        default_factory=lambda: GCGConfig(num_steps=40, search_width=128, topk=64, init_with_target=True),
        description="GCG search per case (n_tokens is set to k; starts from the target token repeated).",
    )


class UniversalSection(BaseModel):
    """Part 2: one trigger for many posts, optimized on training posts and judged on held-out ones."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run the universal trigger search.")
    n_train_posts: int = Field(6, ge=1, description="Training posts (train split) the trigger is optimized on.")
    n_heldout_posts: int = Field(32, ge=1, description="Held-out posts it is judged on.")
    target: str | None = Field(
        None, description="Target text; None picks a plausible single token that is the argmax of no training post."
    )
    auto_target_rank: int = Field(
        0, ge=0, description="With target=None: rank of the chosen token by mean log-prob over the training posts."
    )
    gcg: GCGConfig = Field(
        default_factory=lambda: GCGConfig(n_tokens=10, num_steps=20, search_width=128, topk=64),
        description="GCG search (sum of losses over the training posts).",
    )


class SoftSection(BaseModel):
    """Part 3: soft prompt and PEZ on the first target-steering cases."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run soft prompt / PEZ (needs target steering's cases).")
    n_cases: int = Field(4, ge=1, description="Target-steering cases (the first ones) to repeat with soft prompts.")
    modes: list[Literal["soft", "pez"]] = Field(["soft", "pez"], description="Which optimizations to run.")
    prompt: SoftPromptConfig = Field(
        default_factory=lambda: SoftPromptConfig(steps=80, lr=0.05),
        description="Soft-prompt settings (mode is set per entry of `modes`, n_tokens to the target k).",
    )


class SensitivitySection(BaseModel):
    """Part 4: the sensitivity heat map of one held-out prompt."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Draw the sensitivity map.")
    post_index: int = Field(0, ge=0, description="Which held-out post (index into the shuffled held-out posts).")
    max_tokens: int = Field(120, ge=2, description="Prompt tokens shown (the end of the prompt).")
    config: SensitivityConfig = Field(
        default_factory=SensitivityConfig, description="Ablation settings."
    )


class GoalSection(BaseModel):
    """Part 5: goal-token conditioning (trains a copy of the policy; the SFT policy itself is untouched)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run goal-token SFT and per-bucket evaluation.")
    n_train_rows: int | None = Field(
        320, ge=1, description="Training rows for the goal SFT (seeded subset; buckets use the whole train split)."
    )
    n_eval_posts: int = Field(24, ge=1, description="Held-out posts generated under every bucket token.")
    goal: GoalTokenConfig = Field(
        default_factory=lambda: GoalTokenConfig(n_buckets=5, epochs=1, lr=3e-4, batch_size=8,
                                                             response_length=48),
        description="Buckets, SFT loop and per-bucket sampling.",
    )


class RewardTriggerSection(BaseModel):
    """Part 6: triggers that raise the reward model's score of the frozen policy's samples."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run reward-trigger search.")
    modes: list[Literal["discrete", "soft"]] = Field(["discrete", "soft"], description="Which triggers to optimize.")
    n_train_posts: int = Field(24, ge=1, description="Training posts (train split) sampled from during the search.")
    n_heldout_posts: int = Field(8, ge=1, description="Held-out posts of the library's own steered-vs-unsteered report.")
    trigger: RewardTriggerConfig = Field(
        default_factory=lambda: RewardTriggerConfig(
            n_tokens=5, steps=8, posts_per_step=4, samples_per_post=4, response_length=32, n_candidates=4, lr=0.05
        ),
        description="Search settings (mode is set per entry of `modes`).",
    )


class SteerStageConfig(BaseModel):
    """The `steer` stage: sizes of every part, chosen so the demo finishes in minutes on a 2-core CPU."""

    model_config = ConfigDict(extra="forbid")

    train_split: str = Field("train", description="Split whose posts triggers and goal tokens are trained on.")
    heldout_split: str = Field("test", description="Split of the held-out posts every method is judged on.")
    seed: int = Field(
        0, description="Seed of post selection, targets and sampling; unset in an experiment config = run.seed."
    )
    target: TargetSteeringSection = Field(default_factory=TargetSteeringSection)
    universal: UniversalSection = Field(default_factory=UniversalSection)
    soft: SoftSection = Field(default_factory=SoftSection)
    sensitivity: SensitivitySection = Field(default_factory=SensitivitySection)
    goal: GoalSection = Field(default_factory=GoalSection)
    reward_trigger: RewardTriggerSection = Field(default_factory=RewardTriggerSection)
    eval: SideBySideEvalSection = Field(default_factory=SideBySideEvalSection)


# ----------------------------------------------------------------------------------------- result
@dataclass
class SteerSuiteResult:
    """Everything the stage logs: flat metrics (`steer/...`), side-by-side rows, tables, images."""

    metrics: dict[str, float | int | str | None] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # side-by-side rows (policy.evaluate.ROW_KEYS)
    samples: list[dict] = field(default_factory=list)  # a few generations per method
    tables: dict[str, list[dict]] = field(default_factory=dict)  # key -> rows (same keys in every row)
    images: dict[str, Path] = field(default_factory=dict)  # key -> PNG


# ----------------------------------------------------------------------------------------- small helpers
class _StepLog:
    """One increasing step across all parts (W&B drops out-of-order steps); keys become `steer/<part>/...`."""

    def __init__(self, log: LogFn | None) -> None:
        self.log, self.step = log, 0

    def part(self, name: str) -> LogFn | None:
        if self.log is None:
            return None

        def emit(metrics: dict[str, float], step: int) -> None:
            self.step += 1
            self.log({**{f"steer/{name}/{k}": v for k, v in metrics.items()}, f"steer/{name}/step": step}, self.step)

        return emit


@dataclass
class _Posts:
    """Selected rows of one split as plain lists."""

    post_id: list[str]
    prompt: list[str]
    completion: list[str]
    post_text: list[str]

    @classmethod
    def take(cls, split: Dataset, n: int, seed: int) -> "_Posts":
        idx = list(range(len(split)))
        random.Random(seed).shuffle(idx)
        sub = split.select(idx[:n])
        return cls(list(sub["post_id"]), list(sub["prompt"]), list(sub["completion"]), list(sub["post_text"]))

    def head(self, n: int) -> "_Posts":
        return _Posts(self.post_id[:n], self.prompt[:n], self.completion[:n], self.post_text[:n])


def _n_heldout(cfg: "SteerStageConfig") -> int:
    """Held-out posts the stage draws (one shuffled sample shared by every part)."""
    return max(cfg.target.n_posts, cfg.universal.n_heldout_posts, cfg.goal.n_eval_posts,
               cfg.reward_trigger.n_heldout_posts, cfg.sensitivity.post_index + 1)


def target_steering_prompts(rows: DatasetDict, cfg: "SteerStageConfig") -> list[str]:
    """The held-out prompts the target-steering part uses: its cases' `prompt_index` points into this list."""
    heldout = _Posts.take(_split(rows, cfg.heldout_split, "heldout_split"), _n_heldout(cfg), cfg.seed)
    return heldout.prompt[: cfg.target.n_posts]


def _split(rows: DatasetDict, name: str, field_name: str) -> Dataset:
    if name not in rows:
        raise ValueError(f"steer.{field_name}={name!r} is not a split of the SFT rows (have {list(rows)})")
    needed = {"post_id", "prompt", "completion", "post_text", "subreddit", "score"}
    missing = needed - set(rows[name].column_names)
    if missing:
        raise ValueError(f"SFT rows split {name!r} lacks column(s) {sorted(missing)}; expected the SFT row schema")
    if len(rows[name]) == 0:
        raise ValueError(f"SFT rows split {name!r} is empty: steering needs held-out and training posts")
    return rows[name]


# ----------------------------------------------------------------------------------------- side-by-side evaluation
# ----------------------------------------------------------------------------------------- parts
def _target_steering(model, tok, posts: _Posts, cfg: TargetSteeringSection, seed: int, log: LogFn | None):
    """Part 1: cases run one by one (each its own seed) until n_cases or the time budget is reached."""
    prompts = posts.prompt[: cfg.n_posts]
    started, cases = time.perf_counter(), []
    bar = tqdm(range(cfg.n_cases), desc="target steering")
    for i in bar:
        if cfg.time_budget_s is not None and time.perf_counter() - started > cfg.time_budget_s:
            break
        prompt = prompts[i % len(prompts)]
        rep = gcg.evaluate_target_steering(
            model, tok, [prompt], n_cases=1, k=cfg.k, top_n=cfg.top_n, config=cfg.gcg, seed=seed + i
        )
        case = dict(rep.cases[0])
        case["prompt_index"] = i % len(prompts)
        before = encode(tok, split_prompt(prompt, cfg.gcg.position)[0]).to(model.device)
        trig = encode(tok, case["trigger"]).to(model.device)
        case["perplexity"] = trigger_perplexity(model, tok, before, trig) if trig.numel() else None
        case["target"] = tok.decode([case["target_id"]])
        cases.append(case)
        wins = sum(c["success"] for c in cases)
        bar.set_postfix(success=f"{wins}/{len(cases)}")
        if log is not None:
            log({"success": float(case["success"]), "uplift": case["uplift"], "seconds": case["seconds"]}, i + 1)
    seconds = time.perf_counter() - started
    wins = [c for c in cases if c["success"]]
    ppl = [c["perplexity"] for c in cases if c["perplexity"]]
    n = len(cases)
    metrics = {
        "steer/target_cases": n,
        "steer/target/requested_cases": cfg.n_cases,
        "steer/target/budget_stopped": int(n < cfg.n_cases),
        "steer/target/k": cfg.k,
        "steer/target/top_n": cfg.top_n,
        "steer/target/success_rate": len(wins) / n if n else None,
        "steer/target/mean_uplift": float(np.mean([c["uplift"] for c in cases])) if n else None,
        "steer/target/mean_steps_to_success": float(np.mean([c["steps"] for c in wins])) if wins else None,
        "steer/target/mean_seconds_to_success": float(np.mean([c["seconds"] for c in wins])) if wins else None,
        "steer/target/seconds_per_case": seconds / n if n else None,
        "steer/target/trigger_perplexity_geomean": float(np.exp(np.mean(np.log(ppl)))) if ppl else None,
        "steer/target/seconds": seconds,
    }
    return metrics, cases, prompts


def _auto_target(model, tok, prompts: list[str], rank: int) -> str:
    """A plausible token the model writes after none of `prompts`: allowed, never the argmax, ranked by mean
    log-prob over the prompts (rank 0 = most likely such token)."""
    banned = set(not_allowed_token_ids(tok).tolist())
    with torch.no_grad(), frozen(model):
        logps = []
        for p in prompts:
            logits = model(input_ids=encode(tok, p).to(model.device)[None]).logits[0, -1].float()
            logps.append(torch.log_softmax(logits, -1))
        lp = torch.stack(logps)  # (P, V)
    argmaxes = set(lp.argmax(-1).tolist())
    order = [t for t in lp.mean(0).argsort(descending=True).tolist() if t not in banned and t not in argmaxes]
    return tok.decode([order[min(rank, len(order) - 1)]])


def _universal(model, tok, train: _Posts, heldout: _Posts, cfg: UniversalSection, log: LogFn | None) -> dict:
    """Part 2: one trigger, trained on `train`, judged on `heldout` (with the no-trigger baseline beside it)."""
    target = cfg.target or _auto_target(model, tok, train.prompt, cfg.auto_target_rank)
    cfg_g = cfg.gcg.model_copy(update={"show_progress": True})
    res = gcg.run_universal(model, tok, train.prompt, heldout.prompt, target, cfg_g, log)
    base = gcg.evaluate_trigger(model, tok, heldout.prompt, target, [], cfg.gcg.position)
    return {
        "steer/universal/target": target,
        "steer/universal/trigger": res.trigger,
        "steer/universal/train_posts": len(train.prompt),
        "steer/universal/heldout_posts": len(heldout.prompt),
        "steer/universal/train_success_rate": res.train.success_rate,
        "steer/universal/heldout_success_rate": res.heldout.success_rate,
        "steer/universal/heldout_success_rate_without_trigger": base.success_rate,
        "steer/universal/heldout_mean_uplift": res.heldout.mean_uplift,
        "steer/universal/steps": res.steps,
        "steer/universal/seconds": res.seconds,
        "steer/universal/trigger_perplexity": res.perplexity,
    }


def _soft(model, tok, prompts: list[str], cases: list[dict], cfg: SoftSection, k: int, position: str, log) -> tuple[dict, list[dict]]:
    """Part 3: the same (post, target) cases as GCG, with a continuous trigger and with PEZ."""
    rows, metrics = [], {}
    chosen = cases[: cfg.n_cases]
    for mode in cfg.modes:
        scfg = cfg.prompt.model_copy(update={"mode": mode, "n_tokens": k, "position": position})
        res = []
        for j, c in enumerate(tqdm(chosen, desc=f"soft prompt ({mode})")):
            r = soft_prompt.run(model, tok, prompts[c["prompt_index"]], c["target_id"], scfg.model_copy(update={"seed": j}))
            res.append(r)
            rows.append({"mode": mode, "case": j, "target": c["target"], "gcg_success": c["success"],
                         "initial_loss": r.initial_loss, "soft_loss": r.soft_loss, "soft_success": r.soft_success,
                         "projected_loss": r.projected_loss, "projected_success": r.projected_success,
                         "projected_text": r.projected_text, "steps": r.steps, "seconds": r.seconds})
        init = float(np.mean([r.initial_loss for r in res]))
        soft_l = float(np.mean([r.soft_loss for r in res]))
        proj_l = float(np.mean([r.projected_loss for r in res]))
        gain = init - soft_l
        metrics.update({
            f"steer/soft/{mode}/cases": len(res),
            f"steer/soft/{mode}/soft_success_rate": float(np.mean([r.soft_success for r in res])),
            f"steer/soft/{mode}/projected_success_rate": float(np.mean([r.projected_success for r in res])),
            f"steer/soft/{mode}/initial_loss": init,
            f"steer/soft/{mode}/soft_loss": soft_l,
            f"steer/soft/{mode}/projected_loss": proj_l,
            # fraction of the loss drop the continuous prompt achieved that its nearest tokens keep
            f"steer/soft/{mode}/retained_as_text": (init - proj_l) / gain if gain > 1e-6 else None,
            f"steer/soft/{mode}/seconds": float(sum(r.seconds for r in res)),
        })
        if log is not None:
            log({f"{mode}/projected_success_rate": metrics[f"steer/soft/{mode}/projected_success_rate"]}, 1)
    metrics["steer/soft/gcg_success_rate_same_cases"] = float(np.mean([c["success"] for c in chosen]))
    return metrics, rows


def _sensitivity(model, tok, prompt: str, cfg: SensitivitySection, out_dir: Path) -> tuple[dict, Path, list[dict]]:
    """Part 4: map for the model's own next token (what the prompt makes it write), plotted to a PNG."""
    with torch.no_grad(), frozen(model):
        target = int(model(input_ids=encode(tok, prompt).to(model.device)[None]).logits[0, -1].argmax())
    smap = sensitivity.sensitivity_map(model, tok, prompt, target, cfg.config)
    path = sensitivity.plot_sensitivity(smap, out_dir / "sensitivity.png", cfg.max_tokens)
    top = smap.ablate_replace.abs().topk(min(5, len(smap.tokens))).indices.tolist()
    rows = [{"position": i, "token": smap.tokens[i], **{k: float(v[i]) for k, v in smap.rows().items()}} for i in top]
    metrics = {"steer/sensitivity/target": smap.target, "steer/sensitivity/logprob": smap.logprob,
               "steer/sensitivity/prompt_tokens": len(smap.tokens)}
    return metrics, path, rows


def _goal(model, tok, train: Dataset, heldout: _Posts, cfg: GoalSection, reward_fn, gold_fn, out_dir: Path,
          seed: int, log) -> tuple[dict, list[dict], PreTrainedModel, PreTrainedTokenizerBase, float, int]:
    """Part 5: goal-token SFT of a copy of the policy (saved to out_dir/goal_policy) and per-bucket evaluation."""
    g = cfg.goal
    gmodel, gtok = copy.deepcopy(model), copy.deepcopy(tok)  # the SFT policy itself is never trained
    place(gmodel, model.device, torch.float32)  # the copy trains: float32 weights even when the frozen policy is bf16
    # 1. buckets over the whole train split (percentiles need every row of a subreddit); a seeded subset trains
    buckets = goal_tokens.bucketize([float(s) for s in train["score"]], list(train["subreddit"]), g.n_buckets)
    idx = list(range(len(train)))
    random.Random(seed).shuffle(idx)
    idx = idx[: cfg.n_train_rows or len(idx)]
    sub = train.select(idx)
    # 2. goal tokens, a short goal-conditioned SFT, and reward and gold of each bucket on held-out posts
    posts = heldout.head(cfg.n_eval_posts)
    res = goal_tokens.run(gmodel, gtok, list(sub["prompt"]), list(sub["completion"]), [buckets[i] for i in idx],
                          posts.prompt, reward_fn, g.model_copy(update={"show_progress": True}), gold_fn,
                          posts.post_text, log)
    gmodel.save_pretrained(str(out_dir / "goal_policy"))
    gtok.save_pretrained(str(out_dir / "goal_policy"))
    reports, losses = res.buckets, res.losses
    rewards = [r.reward for r in reports]
    golds = [r.gold for r in reports]
    counts = np.bincount(buckets, minlength=g.n_buckets).tolist()
    table = [{"bucket": r.bucket, "token": goal_tokens.goal_token(r.bucket), "train_rows": counts[r.bucket],
              "reward": r.reward, "gold": r.gold} for r in reports]
    metrics = {
        "steer/goal/n_buckets": g.n_buckets,
        "steer/goal/train_rows": len(idx),
        "steer/goal/sft_steps": len(losses),
        "steer/goal/sft_loss_first": losses[0] if losses else None,
        "steer/goal/sft_loss_last": losses[-1] if losses else None,
        "steer/goal/seconds": res.seconds,
        "steer/goal/spearman_reward": res.spearman_reward,
        "steer/goal/spearman_gold": res.spearman_gold,
        "steer/goal/monotonic_reward": int(all(b >= a for a, b in zip(rewards, rewards[1:]))),
        "steer/goal/monotonic_gold": int(all(b >= a for a, b in zip(golds, golds[1:]))) if gold_fn else None,
        "steer/goal/top_minus_bottom_reward": rewards[-1] - rewards[0],
        "steer/goal/token_ids": str(res.token_ids),
    }
    return metrics, table, gmodel, gtok, res.seconds, len(idx)


def _reward_triggers(model, tok, train: _Posts, heldout: _Posts, cfg: RewardTriggerSection, reward_fn, gold_fn,
                     guard: WeightsGuard, logs: _StepLog, eval_prompts: list[str]) -> tuple[dict, list[Writer]]:
    """Part 6: each mode's trigger, the library's held-out report, and a writer for the side-by-side row."""
    metrics, writers = {}, []
    t = cfg.trigger
    for mode in cfg.modes:
        tcfg = t.model_copy(update={"mode": mode, "show_progress": True})
        res = reward_trigger.run(model, tok, train.prompt, heldout.prompt, reward_fn, tcfg, gold_fn,
                                 heldout.post_text, logs.part(f"reward_trigger/{mode}"))
        changed = guard.check(f"reward trigger ({mode})")
        h = res.heldout
        metrics.update({
            f"steer/reward_trigger/{mode}/heldout_reward_steered": h.reward_steered,
            f"steer/reward_trigger/{mode}/heldout_reward_unsteered": h.reward_unsteered,
            f"steer/reward_trigger/{mode}/heldout_gold_steered": h.gold_steered,
            f"steer/reward_trigger/{mode}/heldout_gold_unsteered": h.gold_unsteered,
            f"steer/reward_trigger/{mode}/heldout_kl": h.kl,
            f"steer/reward_trigger/{mode}/seconds": res.seconds,
        })
        # samples drawn in the search: steps x posts x samples, plus (discrete) each candidate and the
        # incumbent re-scored on the same posts with common random numbers
        per_step = t.posts_per_step * t.samples_per_post
        n_samples = t.steps * per_step * (1 + (t.n_candidates + 1 if mode == "discrete" else 0))
        if mode == "discrete":
            metrics["steer/reward_trigger/discrete/trigger"] = res.trigger
            trig_emb = model.get_input_embeddings().weight[torch.tensor(res.trigger_ids, device=model.device)].detach()
            name = "reward trigger (discrete)"
        else:
            trig_emb = res.soft_embeds
            name = "soft reward prompt"
        writers.append(Writer(
            name, model, tok, trigger_embeds(model, tok, eval_prompts, trig_emb, t.position), changed,
            f"{t.steps} steps, ~{n_samples} policy samples ({t.n_tokens} {'tokens' if mode == 'discrete' else 'vectors'})",
            res.seconds,
        ))
    return metrics, writers


# ----------------------------------------------------------------------------------------- the suite
def run_steering_suite(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: DatasetDict,
    reward_fn: RewardFn,
    held: HeldOut,
    config: SteerStageConfig | None = None,
    out_dir: str | Path = ".",
    gold_fn: GoldFn | None = None,
    log: LogFn | None = None,
) -> SteerSuiteResult:
    """Run every enabled part on the frozen SFT `model`; write PNG and goal policy to `out_dir`.

    rows: the SFT rows (`DatasetDict` with the configured train/held-out splits). reward_fn: the trained
    reward model (`RewardScorer`), judging plain prompts. held: the side-by-side prompts with their reference
    scores (`policy.evaluate.HeldOut`, the same ones eval-policy uses). gold_fn(post_text, summary): the simulator's hidden
    quality, or None for real data. Raises if any input-only method changed the policy's weights.
    """
    cfg = config or SteerStageConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_split = _split(rows, cfg.train_split, "train_split")
    heldout_split = _split(rows, cfg.heldout_split, "heldout_split")
    heldout = _Posts.take(heldout_split, _n_heldout(cfg), cfg.seed)
    train = _Posts.take(train_split, max(cfg.universal.n_train_posts, cfg.reward_trigger.n_train_posts), cfg.seed)
    logs = _StepLog(log)
    guard = WeightsGuard(model)
    result = SteerSuiteResult()
    m = result.metrics
    m["steer/heldout_posts_available"] = len(heldout_split)

    # 1. target-token steering (magic word)
    cases, target_prompts = [], heldout.prompt
    if cfg.target.enabled:
        tm, cases, target_prompts = _target_steering(model, tokenizer, heldout, cfg.target, cfg.seed, logs.part("target"))
        m.update(tm)
        guard.check("GCG target steering")
        result.tables["steer/target_steering_cases"] = cases
    # 2. universal trigger
    if cfg.universal.enabled:
        m.update(_universal(model, tokenizer, train.head(cfg.universal.n_train_posts),
                            heldout.head(cfg.universal.n_heldout_posts), cfg.universal, logs.part("universal")))
        guard.check("GCG universal trigger")
    # 3. soft prompt / PEZ on the first target cases
    if cfg.soft.enabled and cases:
        sm, soft_rows = _soft(model, tokenizer, target_prompts, cases, cfg.soft, cfg.target.k,
                              cfg.target.gcg.position, logs.part("soft"))
        m.update(sm)
        guard.check("soft prompt / PEZ")
        result.tables["steer/soft_prompt_cases"] = soft_rows
    # 4. sensitivity heat map
    if cfg.sensitivity.enabled:
        sm, png, top = _sensitivity(model, tokenizer, heldout.prompt[cfg.sensitivity.post_index], cfg.sensitivity, out)
        m.update(sm)
        guard.check("sensitivity map")
        result.images["steer/sensitivity"] = png
        result.tables["steer/sensitivity_top_tokens"] = top

    # the side-by-side writers; the first is the SFT policy itself through the same sampler (KL ~ 0)
    writers = [Writer("SFT (steer sampler)", model, tokenizer, ids_embeds(model, tokenizer, held.prompts), False,
                       "sampling only", 0.0)]
    # 5. goal tokens (a trained copy)
    if cfg.goal.enabled:
        gm, table, gmodel, gtok, seconds, n_rows = _goal(model, tokenizer, train_split, heldout, cfg.goal, reward_fn,
                                                         gold_fn, out, cfg.seed, logs.part("goal"))
        m.update(gm)
        guard.check("goal tokens (trains a copy)")
        result.tables["steer/goal_buckets"] = table
        top = cfg.goal.goal.n_buckets - 1
        writers.append(Writer(
            "goal token (top bucket)", gmodel, gtok,
            ids_embeds(gmodel, gtok, [goal_tokens.goal_prompt(p, top) for p in held.prompts]), True,
            f"goal SFT: {n_rows} rows x {cfg.goal.goal.epochs} epoch(s), {m['steer/goal/sft_steps']} steps", seconds,
        ))
    # 6. reward triggers
    if cfg.reward_trigger.enabled:
        rm_, rt_writers = _reward_triggers(
            model, tokenizer, train.head(cfg.reward_trigger.n_train_posts),
            heldout.head(cfg.reward_trigger.n_heldout_posts), cfg.reward_trigger, reward_fn, gold_fn, guard, logs,
            held.prompts,
        )
        m.update(rm_)
        writers += rt_writers

    # 8. side-by-side rows, all measured the same way, and a few samples of each
    for w in writers:
        row, res = evaluate_writer(w, model, tokenizer, held, reward_fn, cfg.eval, gold_fn, seed=cfg.seed + 1)
        result.rows.append(row)
        per = res.per_prompt
        for b in range(min(cfg.eval.n_shown, len(held))):
            result.samples.append({"method": w.method, "prompt_index": b, "prompt_end": held.prompts[b][-160:],
                                   "response": res.texts[b * per], "rm_score": float(res.rm[b * per]),
                                   "gold": float(res.gold[b * per]) if res.gold is not None else None})
        for k in ("rm_score", "gold", "gold_win_rate", "rm_win_rate", "kl", "rouge_l", "length", "no_eos_rate"):
            m[f"steer/side/{slug(w.method)}/{k}"] = row[k]
    m["steer/eval/posts"] = len(held)
    m["steer/eval/reference_rm_score"] = float(np.mean(held.ref_rm))
    m["steer/eval/reference_gold"] = float(np.mean(held.ref_gold)) if held.ref_gold is not None else None

    # 7. the frozen policy is bit-identical after everything
    guard.check("suite end")
    m["steer/weights_unchanged"] = 1
    m["steer/weights_checks"] = len(guard.checked)
    m["steer/weights_fingerprint"] = guard.before[:16]
    return result
