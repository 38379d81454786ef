"""`python -m pipelines ppo`: PPO against the upvote reward model, then the critic-free baselines.

    python -m pipelines ppo --config configs/demo.yaml [ppo.kl_coef=0.1 ...]

Reads  sft/model, train-reward/model, build-data/sft.
Writes ppo/policy, ppo/value_model, ppo/checkpoints/step-N (exact resume), ppo/snapshots/step-N (policies for
       eval-policy's curve), ppo/baselines/<rloo|grpo>/policy (when rl.baselines lists them),
       ppo/gold_control/policy (rl.gold_control, simulated world), ppo_samples.json.

RLOO/GRPO (TRL) are trained here, after PPO, from the same SFT policy, prompts and reward callable
(`rl.baselines: [{algo: rloo, ...}]`), so one config and one run directory give the whole side-by-side table;
eval-policy only evaluates.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import datasets
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pipelines.analysis import batch_gold, scaled_gold_reward
from pipelines.cards import write_model_card
from pipelines.rundir import StageDir
from pipelines.stages import Context, distributed_state, register
from pipelines.stages.train import load_scorer
from policy.models import load_causal_lm, load_tokenizer
from policy.ppo import PPODivergedError, train_ppo
from policy.ppo_config import PPOSizes, derive_sizes
from policy.snapshots import PolicySnapshots, list_snapshots
from policy.trl_baselines import BASELINE_NAMES, train_trl_baseline
from policy.value_model import build_value_model, critic_init_dir, same_vocab
from reward_model.evaluate import held_out_summary, weak_reward_reasons
from reward_model.scoring import RewardScorer


def _sim(ctx: Context) -> bool:
    return ctx.cfg.scrape.source == "sim"


def ppo_models(ctx: Context, sft_dir: Path, critic_init: Path | None, role: str = "") -> tuple[PreTrainedModel, ...]:
    """PPO's policy, frozen reference (both from SFT) and value model, where the device rule puts them. All three
    keep float32 weights (ppo.bf16 autocasts): a bf16 reference would make the KL non-zero before any update."""
    policy = ctx.place(load_causal_lm(sft_dir), f"{role}policy")
    ref_policy = ctx.place(load_causal_lm(sft_dir), f"{role}reference policy")
    value_model = ctx.place(build_value_model(policy, critic_init), f"{role}value model")
    return policy, ref_policy, value_model


def _gold_control(ctx: Context, sft_dir: Path, tokenizer: PreTrainedTokenizerBase, critic_init: Path | None,
                  rows: datasets.Dataset, scorer: RewardScorer, sizes: PPOSizes) -> dict:
    """PPO with the same settings against the gold score instead of the reward model (simulated world only:
    `ExperimentConfig` refuses rl.gold_control for other sources).

    Why: if this control raises gold and PPO on the upvote reward does not, the bottleneck is what the reward
    model sees, not the optimizer. `gold_score` reads the formatted prompt (its TL;DR: line is cut off).
    Gold is put on the reward model's scale first (`rl.gold_control_scale`): the KL penalty is weighed against
    the score's spread, and raw gold's is ~8x smaller, so with the same kl_coef raw gold is a different
    experiment (measured: responses shrink from 24 to 13 tokens and gold falls, `docs/ppo-settings.md`).
    """
    out = ctx.out / "gold_control"
    if (out / "policy" / "config.json").is_file():
        print(f"[ppo] gold control: trained policy in {out / 'policy'}: skipped")
        return {}
    choice = ctx.cfg.rl.gold_control_scale
    scaled_gold, shift, scale = scaled_gold_reward(choice, scorer, rows, seed=ctx.cfg.run.seed)
    print(f"[ppo] gold control: optimizes (gold - {shift:.3f}) * {scale:.2f} (rl.gold_control_scale={choice})")
    policy, ref_policy, value_model = ppo_models(ctx, sft_dir, critic_init, "gold control ")
    started = time.time()
    result = train_ppo(policy, ref_policy, value_model, tokenizer, rows.select_columns(["prompt", "post_text"]),
                       scaled_gold, ctx.cfg.ppo, out,
                       log=lambda m, step: ctx.tracker.log({f"gold_control/{k}": v for k, v in m.items()}, step),
                       gold_fn=batch_gold, device=ctx.placement.device, sizes=sizes)
    seconds = time.time() - started
    (out / "result.json").write_text(json.dumps(
        {"seconds": seconds, "updates": result.num_updates, "gold_shift": shift, "gold_scale": scale}, indent=1))
    print(f"[ppo] gold control: {result.num_updates} updates in {seconds:.0f} s -> {result.policy_dir}")
    return {"gold_control/seconds": seconds, "gold_control/gold_shift": shift, "gold_control/gold_scale": scale,
            **{f"gold_control/{k}": v for k, v in result.final_metrics.items()}}


def reward_evaluation(ctx: Context) -> tuple[str, dict]:
    """The reward model's latest held-out evaluation: eval-reward's when it ran, else train-reward's."""
    for stage in ("eval-reward", "train-reward"):
        sd = StageDir(ctx.run_root, stage)
        if sd.is_complete() and "rm/accuracy" in (metrics := sd.metrics()):
            return stage, metrics
    return "train-reward", {}


def check_reward_model_learned(ctx: Context, allow_weak: bool) -> None:
    """Refuse to optimize a reward model whose held-out evaluation is below random or below longer-wins
    (`weak_reward_reasons`): PPO would steer the policy by noise or against the votes. `allow_weak` starts anyway."""
    stage, metrics = reward_evaluation(ctx)
    reasons = weak_reward_reasons(metrics)
    if not metrics:
        print("[ppo] no held-out evaluation of the reward model found (train-reward/eval-reward metrics): "
              "cannot check that it learned the votes")
    if not reasons:
        return
    where = f"{held_out_summary(metrics)}, {ctx.run_root / stage / 'metrics.json'}"
    if allow_weak:
        print(f"[ppo] WARNING: starting from a weak reward model (ppo.allow_weak_reward=true): {'; '.join(reasons)} "
              f"[{where}]", flush=True)
        return
    raise WeakRewardModelError(
        f"[ppo] refusing to start: the reward model has not learned the votes: {'; '.join(reasons)} [{where}]. "
        "Optimizing it would steer the policy by noise or against the votes. Fix the reward model (docs/real-votes.md), "
        "or start anyway with ppo.allow_weak_reward=true"
    )


class WeakRewardModelError(RuntimeError):
    """The ppo stage was asked to optimize a reward model that is below random or below a text-only baseline."""


@register("ppo", "PPO on the SFT policy against the upvote reward model (+ RLOO/GRPO baselines if configured).",
          resumable=True, parallel=True)
def ppo_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    sft_dir = ctx.stage_path("sft") / "model"
    rm_dir = ctx.stage_path("train-reward") / "model"
    check_reward_model_learned(ctx, cfg.ppo.allow_weak_reward)
    data_dir = ctx.stage_path("build-data")
    ctx.tracker.artifact(f"{cfg.run.name}-sft-policy", "model", sft_dir, use=True)
    ctx.tracker.artifact(f"{cfg.run.name}-reward-model", "model", rm_dir, use=True)

    # Models: policy + frozen reference from SFT; critic from the reward model when it reads the same tokens.
    tokenizer = load_tokenizer(sft_dir)
    scorer = load_scorer(ctx, rm_dir)
    critic_dir = critic_init_dir(cfg.rl.critic_init, rm_dir, same_vocab(tokenizer, scorer.tokenizer))
    critic_from_rm = critic_dir is not None
    policy, ref_policy, value_model = ppo_models(ctx, sft_dir, critic_dir)
    rows = datasets.load_from_disk(str(data_dir / "sft"))["train"]
    prompts = rows.select_columns(["prompt", "post_text"])
    gold_fn = batch_gold if _sim(ctx) else None

    sizes = derive_sizes(cfg.ppo, distributed_state().num_processes)  # once; train_ppo and the control take them
    print(f"[ppo] {sizes.num_updates} updates x {sizes.batch_size} episodes on {len(prompts)} prompts; "
          f"snapshots every {cfg.rl.snapshot_every} updates")
    snapshots = PolicySnapshots(policy, tokenizer, ctx.out / "snapshots", cfg.rl.snapshot_every, sizes.num_updates)
    samples: list[dict] = []

    def log(metrics: dict[str, float], step: int) -> None:
        ctx.tracker.log(metrics, step)
        snapshots(step)

    def on_samples(batch: list[dict], step: int) -> None:
        samples.extend(batch)
        columns = list(samples[0].keys())
        ctx.tracker.table("ppo/samples", columns, [[s.get(c) for c in columns] for s in samples])

    started = time.time()
    try:
        result = train_ppo(policy, ref_policy, value_model, tokenizer, prompts, scorer, cfg.ppo, ctx.out,
                           log=log, gold_fn=gold_fn, on_samples=on_samples, device=ctx.placement.device, sizes=sizes)
    except PPODivergedError as err:
        raise RuntimeError(
            f"[ppo] training diverged: {err}. Rerunning with the same settings resumes from that checkpoint and "
            f"would diverge again: lower ppo.learning_rate, raise ppo.kl_coef or set ppo.max_grad_norm (or delete "
            f"{ctx.out / 'checkpoints'} to restart from the SFT policy), then rerun `python -m pipelines ppo ...`"
        ) from err
    ppo_seconds = time.time() - started
    for s in samples[-3:]:
        print(f"--- step {s['step']}  score {s['score']:.3f}  {s.get('gold', '')}\n{s['response']}")
    ctx.tracker.artifact(f"{cfg.run.name}-ppo-policy", "model", result.policy_dir)
    metrics = {**result.final_metrics, "ppo/updates": result.num_updates, "ppo/batch_size": sizes.batch_size,
               "ppo/snapshots": len(list_snapshots(ctx.out)), "ppo/critic_from_rm": critic_from_rm,
               "time/ppo_train_seconds": ppo_seconds,
               # over the whole run (rollouts, updates, checkpoints, snapshots); `episodes_per_second` is the last update's
               "ppo/episodes_per_second_overall": len(result.history) * sizes.batch_size / ppo_seconds}

    if cfg.rl.gold_control:
        metrics.update(_gold_control(ctx, sft_dir, tokenizer, critic_dir, rows, scorer, sizes))

    # Critic-free baselines from the same SFT policy, prompts and reward (skipped when already trained).
    for base in cfg.rl.baselines:
        out = ctx.out / "baselines" / base.algo
        if (out / "policy" / "config.json").is_file() and (out / "result.json").is_file():
            print(f"[ppo] {base.algo}: trained policy in {out / 'policy'}: skipped")
            continue
        t0 = time.time()
        history = train_trl_baseline(
            sft_dir, tokenizer, list(prompts["prompt"]), scorer, base, out,
            log=lambda m, step, a=base.algo: ctx.tracker.log({f"{a}/{k}": v for k, v in m.items()} | {f"{a}/step": step}),
            place=lambda model, role, a=base.algo: ctx.place(model, f"{BASELINE_NAMES[a]} {role}"),
        )
        seconds = time.time() - t0
        steps = max([int(h.get("step", 0)) for h in history] + [0])
        (out / "result.json").write_text(json.dumps({"algo": base.algo, "seconds": seconds, "config": base.model_dump(),
                                                     "max_steps": steps, "log_history": history}, indent=1, default=str))
        ctx.tracker.artifact(f"{cfg.run.name}-{base.algo}-policy", "model", out / "policy")
        metrics[f"{base.algo}/seconds"] = seconds
    write_model_card(ctx, "ppo", result.policy_dir, metrics)
    return metrics
