"""`python -m pipelines eval-policy`: the held-out policy table (SFT, best-of-n, PPO snapshots, RLOO/GRPO, the
gold control): reward, gold, KL and win rates on the same prompts, paired against SFT.

    python -m pipelines eval-policy --config configs/demo.yaml [eval_policy.max_prompts=128 ...]

Reads  build-data/sft, sft/model, train-reward/model, and everything the ppo stage wrote.
Writes eval-policy/policy_table.json, vs_sft.json, gold_parts.json, on_policy_reward.json (simulated world),
       gold_vs_sqrt_kl.png, proxy_vs_gold.png, eval_samples.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from data.sim.gold import gold_score
from pipelines.analysis import (
    ON_POLICY_FEATURES,
    compare_with_sft,
    format_vs_sft,
    gold_parts,
    load_held_out,
    on_policy_reward_check,
)
from pipelines.stages import Context, register
from pipelines.stages.train import load_scorer
from policy.evaluate import (
    ROW_KEYS,
    HeldOut,
    Responses,
    best_of_n_rows,
    best_of_n_selection,
    format_rows,
    make_row,
    per_prompt_gold,
    policy_kl,
    reference_row,
    sample_responses,
    slug,
    weights_changed,
)
from policy.models import load_causal_lm, load_tokenizer
from policy.plots import plot_gold_vs_sqrt_kl, plot_proxy_vs_gold, ppo_curve
from policy.snapshots import list_snapshots
from policy.trl_baselines import BASELINE_NAMES
from reward_model.scoring import RewardScorer


GOLD_CONTROL_NAME = "PPO on gold (control)"


def _sim(ctx: Context) -> bool:
    return ctx.cfg.scrape.source == "sim"


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _stage_seconds(ctx: Context, stage: str) -> float:
    done = ctx.run_root / stage / "DONE.json"
    return float(json.loads(done.read_text()).get("seconds", 0.0)) if done.is_file() else 0.0


def held_out(ctx: Context, scorer: RewardScorer) -> HeldOut:
    """The evaluated prompts of this run (`load_held_out` on its build-data stage)."""
    return load_held_out(ctx.stage_path("build-data"), ctx.cfg.eval_policy, scorer, with_gold=_sim(ctx))


def _baseline_compute(name: str, info: dict) -> str:
    """The compute column of an RLOO/GRPO row, from its result.json."""
    bcfg = info.get("config", {})
    steps = info.get("max_steps", bcfg.get("max_steps", "?"))
    return (f"{name} {steps} steps x {bcfg.get('per_device_train_batch_size', '?')} "
            f"completions ({bcfg.get('num_generations', '?')}/prompt), {info.get('seconds', 0):.0f} s")


def _gold_control_compute(name: str, info: dict) -> str:
    """The compute column of the gold-reward PPO control's row, from its result.json."""
    return f"PPO {info.get('updates', '?')} updates against the gold score, {info.get('seconds', 0):.0f} s"


@register("eval-policy", "Held-out table: SFT, PPO snapshots, best-of-n, RLOO/GRPO (reward, gold, KL, win rates).")
def eval_policy_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    ecfg = cfg.eval_policy  # its temperature and lengths are PPO's unless set (resolved in pipelines.config)
    sft_dir = ctx.stage_path("sft") / "model"
    rm_dir = ctx.stage_path("train-reward") / "model"
    ppo_dir = ctx.stage_path("ppo")
    tokenizer = load_tokenizer(sft_dir)
    sft = ctx.place(load_causal_lm(sft_dir), "SFT policy", frozen=True)
    scorer = load_scorer(ctx, rm_dir)
    gold_fn = gold_score if _sim(ctx) else None
    torch.manual_seed(ecfg.seed)
    held = held_out(ctx, scorer)
    print(f"[eval-policy] {len(held)} held-out prompts ({ecfg.split}), temperature {ecfg.temperature}, "
          f"{ecfg.response_length} new tokens")
    table: list[dict] = [reference_row(held, tokenizer)]
    shown: dict[str, list[str]] = {}  # method -> response to each of the first prompts (samples table)
    per_prompt: dict[str, dict[str, np.ndarray]] = {}  # method -> [B] gold win / gold (paired comparison)
    parts: dict[str, dict[str, float]] = {}  # method -> mean of each part of gold (simulated world)

    sampled = {"tokens": 0, "seconds": 0.0}  # every policy's sampling: generation tokens/s on this device

    def keep(method: str, res: Responses, weights: np.ndarray | None = None) -> None:
        if weights is None:  # best-of-n rows re-weight the SFT pool: counted once, with SFT
            sampled["tokens"] += len(res.texts) * ecfg.response_length
            sampled["seconds"] += res.generate_seconds
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
        model = ctx.place(load_causal_lm(path), "PPO snapshots", frozen=True)
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
        model = ctx.place(load_causal_lm(run_dir / "policy"), name, frozen=True)
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
              f"{format_vs_sft(vs_sft)}")
    for key, png in (("eval/gold_vs_sqrt_kl", plot_gold_vs_sqrt_kl(table, ctx.out / "gold_vs_sqrt_kl.png")),
                     ("eval/proxy_vs_gold", plot_proxy_vs_gold(curve, ctx.out / "proxy_vs_gold.png"))):
        if png is not None:
            ctx.tracker.image(key, png)
    metrics: dict[str, float] = {"eval/prompts": len(held)}
    if sampled["seconds"] > 0:
        metrics["eval/generate_tokens_per_second"] = sampled["tokens"] / sampled["seconds"]
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
