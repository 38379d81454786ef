"""`ppo` and `eval-policy` stages: RL against the upvote reward model, and the held-out policy table.

ppo:         sft/model, train-reward/model, build-data/sft  -> ppo/policy, ppo/value_model,
             ppo/checkpoints/step-N (exact resume), ppo/snapshots/step-N (policies for the curve),
             ppo/baselines/<rloo|grpo>/policy (when rl.baselines lists them), ppo_samples.json
eval-policy: the above + sft/model                          -> eval-policy/policy_table.json,
             gold_vs_sqrt_kl.png, proxy_vs_gold.png, eval_samples.json

    python -m pipelines ppo --config configs/demo.yaml [ppo.kl_coef=0.1 ...]
    python -m pipelines eval-policy --config configs/demo.yaml [eval_policy.max_prompts=128 ...]

RLOO/GRPO (TRL) are trained in the `ppo` stage, after PPO, from the same SFT policy, prompts and reward
callable (`rl.baselines: [{algo: rloo, ...}]`), so one config and one run directory give the whole
side-by-side table; eval-policy only evaluates.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from data.sim.gold import gold_components, gold_score
from pipelines.rundir import StageDir
from pipelines.stages import Context, distributed_state, register
from policy.evaluate import (
    ROW_KEYS,
    EvalPolicyConfig,
    HeldOut,
    Responses,
    best_of_n_rows,
    best_of_n_selection,
    format_rows,
    make_row,
    paired_gain,
    per_prompt_gold,
    policy_kl,
    reference_row,
    sample_responses,
    settings,
    slug,
    weighted_per_prompt,
    weights_changed,
)
from policy.models import load_causal_lm, load_tokenizer
from policy.plots import plot_gold_vs_sqrt_kl, plot_proxy_vs_gold, ppo_curve
from policy.ppo import PPODivergedError, build_value_model, derive_sizes, train_ppo
from policy.reward_diagnostics import on_policy_agreement, within_prompt_correlation
from policy.trl_baselines import train_trl_baseline
from reward_model.evaluate import held_out_summary, weak_reward_reasons
from reward_model.scoring import RewardScorer

SNAPSHOT = re.compile(r"^step-(\d+)$")
BASELINE_NAMES = {"rloo": "RLOO", "grpo": "GRPO"}
GOLD_CONTROL_NAME = "PPO on gold (control)"


def _sim(ctx: Context) -> bool:
    return ctx.cfg.scrape.source == "sim"


def batch_gold(post_texts: list[str], responses: list[str]) -> torch.Tensor:
    """`gold_score` as a RewardFn over a batch: [batch]."""
    return torch.tensor([gold_score(p, r) for p, r in zip(post_texts, responses)], dtype=torch.float32)


def same_vocab(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """Whether two tokenizers map the same strings to the same ids (a reward model can then be the critic)."""
    return a.get_vocab() == b.get_vocab()


# ----------------------------------------------------------------------------------------------------------
# ppo
# ----------------------------------------------------------------------------------------------------------
def _merged_policy(policy: PreTrainedModel) -> PreTrainedModel:
    """The policy as a plain HF model: a copy with any LoRA layers (peft injects them in place) merged."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return policy
    if not any(isinstance(m, BaseTunerLayer) for m in policy.modules()):
        return policy
    merged = copy.deepcopy(policy)
    for name, module in list(merged.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent_name) if parent_name else merged, child, module.get_base_layer())
    return merged


class PolicySnapshots:
    """Saves the policy every `every` updates and at `last` into `root/step-NNNNNNN` (atomically: tmp + rename).

    Called from PPO's log callback, which runs after the update's optimizer steps, so a snapshot holds the
    weights after that update. A resumed run rewrites the snapshots of the updates it repeats.
    """

    def __init__(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, root: Path, every: int, last: int):
        self.policy, self.tokenizer, self.root, self.every, self.last = policy, tokenizer, root, every, last

    def __call__(self, step: int) -> None:
        if step % self.every and step != self.last:
            return
        final = self.root / f"step-{step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _merged_policy(self.policy).save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)


def list_snapshots(ppo_dir: Path) -> list[tuple[int, Path]]:
    """(update, directory) of every complete PPO policy snapshot, by update."""
    found = []
    for path in (ppo_dir / "snapshots").glob("step-*"):
        m = SNAPSHOT.match(path.name)
        if m and (path / "config.json").is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def critic_init_dir(choice: str, rm_dir: Path, same_vocab: bool) -> Path | None:
    """Directory the value model starts from (`rl.critic_init`), or None for the policy with a zero head. A reward
    model reading other tokens cannot be a critic over the policy's tokens, so it falls back to the policy."""
    if choice == "policy":
        return None
    if not same_vocab:
        print("[ppo] the reward model's tokenizer differs from the policy's: value model starts from the policy")
        return None
    return rm_dir


def gold_on_reward_scale(scorer: RewardScorer, rows: datasets.Dataset, n: int = 256, seed: int = 0) -> tuple[float, float]:
    """(shift, scale) that put gold on the reward model's scale: over up to `n` reference TL;DRs of `rows`,
    (gold - shift) * scale has the reward model's mean and standard deviation there."""
    rows = rows.shuffle(seed=seed).select(range(min(n, len(rows))))
    rm = scorer.score(list(rows["prompt"]), list(rows["completion"])).double().numpy()
    gold = np.array([gold_score(p, c) for p, c in zip(rows["post_text"], rows["completion"])])
    if gold.std() == 0:
        raise ValueError("gold has no spread over the reference TL;DRs: cannot match the reward model's scale")
    scale = float(rm.std() / gold.std())
    return float(gold.mean() - rm.mean() / scale), scale


def scaled_gold_reward(choice: str | float, scorer: RewardScorer, rows: datasets.Dataset, seed: int = 0):
    """Gold as a PPO reward on the scale `rl.gold_control_scale` names: (reward_fn, shift, scale), the reward
    being (gold - shift) * scale."""
    shift, scale = gold_on_reward_scale(scorer, rows, seed=seed) if choice == "reward_model" else (0.0, float(choice))

    def reward(prompts: list[str], responses: list[str]) -> torch.Tensor:
        return (batch_gold(prompts, responses) - shift) * scale

    return reward, shift, scale


def _gold_control(ctx: Context, sft_dir: Path, tokenizer: PreTrainedTokenizerBase, critic_init: Path | None,
                  rows: datasets.Dataset, scorer: RewardScorer) -> dict:
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
    policy, ref_policy = load_causal_lm(sft_dir), load_causal_lm(sft_dir)
    value_model = build_value_model(policy, critic_init)
    started = time.time()
    result = train_ppo(policy, ref_policy, value_model, tokenizer, rows.select_columns(["prompt", "post_text"]),
                       scaled_gold, ctx.cfg.ppo, out,
                       log=lambda m, step: ctx.tracker.log({f"gold_control/{k}": v for k, v in m.items()}, step),
                       gold_fn=batch_gold)
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
    policy, ref_policy = load_causal_lm(sft_dir), load_causal_lm(sft_dir)
    scorer = RewardScorer.from_pretrained(rm_dir, batch_size=cfg.reward.scoring_batch_size)
    critic_dir = critic_init_dir(cfg.rl.critic_init, rm_dir, same_vocab(tokenizer, scorer.tokenizer))
    critic_from_rm = critic_dir is not None
    value_model = build_value_model(policy, critic_dir)
    rows = datasets.load_from_disk(str(data_dir / "sft"))["train"]
    prompts = rows.select_columns(["prompt", "post_text"])
    gold_fn = batch_gold if _sim(ctx) else None

    sizes = derive_sizes(cfg.ppo, distributed_state().num_processes)
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
                           log=log, gold_fn=gold_fn, on_samples=on_samples)
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
               "time/ppo_train_seconds": ppo_seconds}

    if cfg.rl.gold_control:
        metrics.update(_gold_control(ctx, sft_dir, tokenizer, critic_dir, rows, scorer))

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
        )
        seconds = time.time() - t0
        (out / "result.json").write_text(json.dumps({"algo": base.algo, "seconds": seconds, "config": base.model_dump(),
                                                     "log_history": history}, indent=1, default=str))
        ctx.tracker.artifact(f"{cfg.run.name}-{base.algo}-policy", "model", out / "policy")
        metrics[f"{base.algo}/seconds"] = seconds
    return metrics


# ----------------------------------------------------------------------------------------------------------
# eval-policy
# ----------------------------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _stage_seconds(ctx: Context, stage: str) -> float:
    done = ctx.run_root / stage / "DONE.json"
    return float(json.loads(done.read_text()).get("seconds", 0.0)) if done.is_file() else 0.0


def held_out(ctx: Context, scorer: RewardScorer) -> HeldOut:
    """The evaluated prompts of this run (`load_held_out` on its build-data stage)."""
    return load_held_out(ctx.stage_path("build-data"), ctx.cfg.eval_policy, scorer, with_gold=_sim(ctx))


def load_held_out(data_dir: Path, ecfg: EvalPolicyConfig, scorer: RewardScorer, with_gold: bool) -> HeldOut:
    """The evaluated prompts: up to `max_prompts` rows of the SFT split in `data_dir/sft`, a seeded choice;
    references scored by the reward model (and by gold in the simulated world)."""
    splits = datasets.load_from_disk(str(data_dir / "sft"))
    if ecfg.split not in splits:
        raise ValueError(f"eval_policy.split={ecfg.split!r}: build-data/sft has splits {list(splits)}")
    rows = splits[ecfg.split]
    if len(rows) == 0:
        raise ValueError(f"eval_policy.split={ecfg.split!r} of build-data/sft is empty: nothing to evaluate")
    rows = rows.shuffle(seed=ecfg.seed).select(range(min(ecfg.max_prompts, len(rows))))
    prompts, posts, refs = list(rows["prompt"]), list(rows["post_text"]), list(rows["completion"])
    ref_gold = np.array([gold_score(p, r) for p, r in zip(posts, refs)]) if with_gold else None
    return HeldOut(prompts, posts, refs, scorer.score(prompts, refs).double().numpy(), ref_gold)


def _baseline_compute(name: str, info: dict) -> str:
    """The compute column of an RLOO/GRPO row, from its result.json."""
    bcfg = info.get("config", {})
    return (f"{name} {bcfg.get('max_steps', '?')} steps x {bcfg.get('per_device_train_batch_size', '?')} "
            f"completions ({bcfg.get('num_generations', '?')}/prompt), {info.get('seconds', 0):.0f} s")


# Gold's parts whose within-prompt correlation with the reward says what the reward model rewards on-policy.
ON_POLICY_FEATURES = ("coverage", "precision", "n_hallucinated", "n_summary_facts", "n_words")


def gold_part_grids(res: Responses, held: HeldOut) -> dict[str, np.ndarray]:
    """[B, S] grid of each of gold's parts (`ON_POLICY_FEATURES`) over the responses (simulated world)."""
    rows = [i for i in range(len(held)) for _ in range(res.per_prompt)]
    parts = [gold_components(held.post_texts[i], t) for i, t in zip(rows, res.texts)]
    return {f: res.grid(np.array([c[f] for c in parts], float)) for f in ON_POLICY_FEATURES}


def on_policy_reward_check(pool: Responses, held: HeldOut) -> dict:
    """Simulated world: how the reward model orders the SFT policy's own samples (the only texts PPO and
    best-of-n ask it about) compared with gold, and which parts of gold its score follows within a prompt."""
    rm, gold = pool.grid(pool.rm), pool.grid(pool.gold)
    features = gold_part_grids(pool, held)
    return {
        "samples_per_prompt": pool.per_prompt,
        "agreement": on_policy_agreement(rm, gold),
        "corr_rm": {f: within_prompt_correlation(rm, v) for f, v in features.items()},
        "corr_gold": {f: within_prompt_correlation(gold, v) for f, v in features.items()},
        "mean": {f: float(v.mean()) for f, v in features.items()},
    }


def gold_parts(res: Responses, held: HeldOut, weights: np.ndarray | None = None) -> dict[str, float]:
    """Simulated world: the mean of each of gold's parts (`ON_POLICY_FEATURES`) over a method's responses,
    weighted like its gold (best-of-n weights its pool): what the method changes in the text, not just how
    much gold it gets."""
    return {f: float(weighted_per_prompt(grid, weights).mean()) for f, grid in gold_part_grids(res, held).items()}


def compare_with_sft(per_prompt: dict[str, dict[str, np.ndarray]], seed: int) -> dict[str, dict]:
    """Every method against SFT on the same held-out prompts: paired gain in gold win rate (against the
    reference TL;DR) and in gold, with bootstrap intervals (`policy.evaluate.paired_gain`)."""
    base = per_prompt.get("SFT")
    if base is None:
        return {}
    return {method: {key: paired_gain(values[key], base[key], seed=seed) for key in ("gold_win", "gold")}
            for method, values in per_prompt.items() if method != "SFT"}


def _format_vs_sft(vs_sft: dict[str, dict]) -> str:
    lines = [f"{'method':<28} {'gold win - SFT':>26} {'P(<=0)':>7} {'gold - SFT':>26}"]
    for method, d in vs_sft.items():
        w, g = d["gold_win"], d["gold"]
        lines.append(f"{method:<28} {w['mean']:>+8.3f} [{w['lo']:+.3f}, {w['hi']:+.3f}] {w['p_not_above']:>7.3f} "
                     f"{g['mean']:>+8.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}]")
    return "\n".join(lines)


def _gold_control_compute(name: str, info: dict) -> str:
    """The compute column of the gold-reward PPO control's row, from its result.json."""
    return f"PPO {info.get('updates', '?')} updates against the gold score, {info.get('seconds', 0):.0f} s"


@register("eval-policy", "Held-out table: SFT, PPO snapshots, best-of-n, RLOO/GRPO (reward, gold, KL, win rates).")
def eval_policy_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    ecfg = settings(cfg.eval_policy, cfg.ppo.temperature, cfg.ppo.response_length, cfg.ppo.max_prompt_length)
    sft_dir = ctx.stage_path("sft") / "model"
    rm_dir = ctx.stage_path("train-reward") / "model"
    ppo_dir = ctx.stage_path("ppo")
    tokenizer = load_tokenizer(sft_dir)
    sft = load_causal_lm(sft_dir)
    scorer = RewardScorer.from_pretrained(rm_dir, batch_size=cfg.reward.scoring_batch_size)
    gold_fn = gold_score if _sim(ctx) else None
    torch.manual_seed(ecfg.seed)
    held = held_out(ctx, scorer)
    print(f"[eval-policy] {len(held)} held-out prompts ({ecfg.split}), temperature {ecfg.temperature}, "
          f"{ecfg.response_length} new tokens")
    table: list[dict] = [reference_row(held, tokenizer)]
    shown: dict[str, list[str]] = {}  # method -> response to each of the first prompts (samples table)
    per_prompt: dict[str, dict[str, np.ndarray]] = {}  # method -> [B] gold win / gold (paired comparison)
    parts: dict[str, dict[str, float]] = {}  # method -> mean of each part of gold (simulated world)

    def keep(method: str, res: Responses, weights: np.ndarray | None = None) -> None:
        values = per_prompt_gold(res, held, weights)
        if values is not None:
            per_prompt[method] = values
            parts[method] = gold_parts(res, held, weights)

    def show(method: str, texts: list[str], per_prompt: int) -> None:
        shown[method] = [texts[b * per_prompt] for b in range(min(ecfg.n_table_samples, len(held)))]

    # 1. SFT: one pool of S samples per prompt; uniform weights give the SFT row, order statistics best-of-n.
    pool_size = max([*ecfg.best_of_n, ecfg.samples_per_prompt])
    pool = sample_responses(sft, sft, tokenizer, held, pool_size, ecfg, scorer, gold_fn, desc=f"SFT x{pool_size}")
    sft_steps = json.loads((sft_dir.parent / "metrics.json").read_text()).get("sft/steps") \
        if (sft_dir.parent / "metrics.json").is_file() else "?"
    table.append(make_row("SFT", pool, held, policy_kl(pool), False, f"SFT {sft_steps} steps",
                          _stage_seconds(ctx, "sft") + pool.seconds * ecfg.samples_per_prompt / pool_size))
    show("SFT", pool.texts, pool_size)
    keep("SFT", pool)
    selection = best_of_n_selection(pool, ecfg.best_of_n, ecfg.bon_missing_eos_penalty)
    table += best_of_n_rows(pool, held, selection)
    for n, weights in selection.items():
        keep(f"best-of-{n}", pool, weights)
    if ecfg.best_of_n and ecfg.best_of_n[-1] == pool_size:  # the exact best-of-S pick on the first prompts
        picks = np.argmax(pool.grid(pool.rm), axis=1)
        shown[f"best-of-{pool_size}"] = [pool.texts[b * pool_size + int(picks[b])]
                                         for b in range(min(ecfg.n_table_samples, len(held)))]

    on_policy = on_policy_reward_check(pool, held) if gold_fn is not None else None
    if on_policy is not None:
        (ctx.out / "on_policy_reward.json").write_text(json.dumps(on_policy, indent=1))
        a = on_policy["agreement"]
        print(f"[eval-policy] on the SFT policy's own samples the reward model orders pairs as gold does "
              f"{a.get('accuracy', float('nan')):.3f} of the time ({a.get('pairs', 0):.0f} within-prompt pairs)")

    # 2. PPO: every snapshot (the over-optimization curve) or only the last one.
    curve = ppo_curve(_read_jsonl(ppo_dir / "metrics.jsonl"))
    step_seconds = np.cumsum([r.get("time/step", 0.0) for r in curve])
    episodes = {int(r["step"]): int(r.get("episodes", 0)) for r in curve}
    snaps = list_snapshots(ppo_dir)
    if not snaps and (ppo_dir / "policy" / "config.json").is_file():
        snaps = [(int(curve[-1]["step"]) if curve else 0, ppo_dir / "policy")]
    if not ecfg.ppo_snapshots:
        snaps = snaps[-1:]
    for step, path in snaps:
        model = load_causal_lm(path)
        res = sample_responses(model, sft, tokenizer, held, ecfg.samples_per_prompt, ecfg, scorer, gold_fn,
                               desc=f"PPO step {step}")
        train_s = float(step_seconds[step - 1]) if 0 < step <= len(step_seconds) else 0.0
        batch = episodes.get(step, 0) // max(step, 1)
        compute = f"PPO {step} updates x {batch} episodes, {train_s:.0f} s"
        table.append(make_row(f"PPO step {step}", res, held, policy_kl(res), weights_changed(model, sft), compute,
                              train_s + res.seconds))
        show(f"PPO step {step}", res.texts, ecfg.samples_per_prompt)
        keep(f"PPO step {step}", res)

    # 3. The other policies the ppo stage trained: RLOO / GRPO baselines, and the gold-reward PPO control
    #    (simulated world: an upper bound for what PPO can do with these settings).
    trained = [(name, ppo_dir / "baselines" / algo, _baseline_compute) for algo, name in BASELINE_NAMES.items()]
    trained.append((GOLD_CONTROL_NAME, ppo_dir / "gold_control", _gold_control_compute))
    for name, run_dir, describe in trained:
        if not (run_dir / "policy" / "config.json").is_file():
            continue
        info = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").is_file() else {}
        model = load_causal_lm(run_dir / "policy")
        res = sample_responses(model, sft, tokenizer, held, ecfg.samples_per_prompt, ecfg, scorer, gold_fn, desc=name)
        table.append(make_row(name, res, held, policy_kl(res), weights_changed(model, sft), describe(name, info),
                              float(info.get("seconds", 0.0)) + res.seconds))
        show(name, res.texts, ecfg.samples_per_prompt)
        keep(name, res)

    # 4. Outputs: the table (JSON, W&B, terminal), samples, plots.
    (ctx.out / "policy_table.json").write_text(json.dumps(table, indent=1))
    ctx.tracker.table("eval/policy_table", list(ROW_KEYS), [[r[k] for k in ROW_KEYS] for r in table])
    sample_rows = [[b, held.prompts[b], held.references[b], method, texts[b]]
                   for b in range(min(ecfg.n_table_samples, len(held))) for method, texts in shown.items()]
    ctx.tracker.table("eval/samples", ["prompt_index", "prompt", "reference", "method", "response"], sample_rows)
    print(f"\n[eval-policy] {len(held)} held-out prompts; win rates vs the reference TL;DR, 95% Wilson CIs\n"
          f"{format_rows(table)}")
    if parts:
        (ctx.out / "gold_parts.json").write_text(json.dumps(parts, indent=1))
        ctx.tracker.table("eval/gold_parts", ["method", *ON_POLICY_FEATURES],
                          [[method, *[v[f] for f in ON_POLICY_FEATURES]] for method, v in parts.items()])
    vs_sft = compare_with_sft(per_prompt, ecfg.seed)
    if vs_sft:
        (ctx.out / "vs_sft.json").write_text(json.dumps(vs_sft, indent=1))
        print(f"\n[eval-policy] paired against SFT on the same {len(held)} prompts (95% bootstrap over prompts)\n"
              f"{_format_vs_sft(vs_sft)}")
    for key, png in (("eval/gold_vs_sqrt_kl", plot_gold_vs_sqrt_kl(table, ctx.out / "gold_vs_sqrt_kl.png")),
                     ("eval/proxy_vs_gold", plot_proxy_vs_gold(curve, ctx.out / "proxy_vs_gold.png"))):
        if png is not None:
            ctx.tracker.image(key, png)
    metrics: dict[str, float] = {"eval/prompts": len(held)}
    if on_policy is not None:
        metrics.update({f"eval/on_policy/rm_gold_{k}": v for k, v in on_policy["agreement"].items()})
        for who in ("corr_rm", "corr_gold"):
            metrics.update({f"eval/on_policy/{who}/{f}": v for f, v in on_policy[who].items() if math.isfinite(v)})
    for method, d in vs_sft.items():
        for key, stats in d.items():
            for stat, value in stats.items():
                if stat != "prompts":
                    metrics[f"eval/{slug(method)}/vs_sft/{key}_{stat}"] = value
    for row in table:
        for key in ROW_KEYS:
            value = row[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                metrics[f"eval/{slug(row['method'])}/{key}"] = value
            if key == "gold_win_ci" and value:
                metrics[f"eval/{slug(row['method'])}/gold_win_lo"] = value[0]
                metrics[f"eval/{slug(row['method'])}/gold_win_hi"] = value[1]
    return metrics
