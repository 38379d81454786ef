"""`pretrain`, `sft`, `train-reward` and `eval-reward` stages: the supervised policy and the upvote reward model.

pretrain:     build-data/{tokenizer,sft}            -> pretrain/model (policy + tokenizer; nothing when pretrain.steps is 0)
sft:          build-data/{tokenizer,sft}, pretrain  -> sft/model (policy + tokenizer, save_pretrained)
train-reward: build-data/pairs, sft/model           -> train-reward/model (+ reward_config.json), evaluation
eval-reward:  train-reward/model, build-data/pairs  -> eval-reward/ (tables, reliability.png)
"""

from __future__ import annotations

from pathlib import Path

import datasets
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from data.sim.gold import REFERENCE_SCORERS, gold_score
from data.sim.pairs import sim_win_prob_fn
from data.sim.probes import fact_swap_pairs
from pipelines.build import load_pair_sets
from pipelines.cards import write_model_card
from pipelines.stages import Context, distributed_state, register, sim_world
from policy.models import build_tiny_causal_lm, load_causal_lm, load_tokenizer
from policy.sft import pretrain_lm, train_sft
from reward_model.evaluate import evaluate_reward_model, format_table, weak_reward_warning
from reward_model.scoring import RewardScorer
from reward_model.train import train_reward_model


def _report_to(ctx: Context) -> list[str]:
    return ["wandb"] if ctx.tracker.run is not None else []


def _sim(ctx: Context) -> bool:
    return ctx.cfg.scrape.source == "sim"


def _initial_policy(cfg, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The policy before any training: `policy.name_or_path` (hub or local), or a tiny GPT-2 from the config."""
    if cfg.policy.name_or_path:
        model = load_causal_lm(cfg.policy.name_or_path)
        model.resize_token_embeddings(len(tokenizer))
        return model
    return build_tiny_causal_lm(tokenizer, cfg.policy)


@register("pretrain", "Language modelling on whole texts (post + TL;DR): a from-scratch policy's stand-in for a "
          "pretrained LM (pretrain.steps; 0 = nothing to do).", resumable=True, parallel=True)
def pretrain_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    if cfg.pretrain.steps == 0:
        print("[pretrain] pretrain.steps is 0: nothing to do, sft starts from the policy itself")
        return {"pretrain/steps": 0}
    data_dir = ctx.stage_path("build-data")
    tokenizer = load_tokenizer(data_dir / "tokenizer")
    model = _initial_policy(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[pretrain] policy: {type(model).__name__}, {n_params / 1e6:.2f}M parameters, {cfg.pretrain.steps} steps")
    rows = datasets.load_from_disk(str(data_dir / "sft"))
    result = pretrain_lm(model, tokenizer, rows, ctx.out / "model", cfg.sft, cfg.pretrain,
                         report_to=_report_to(ctx), log=ctx.tracker.log, place=ctx.place)
    ctx.tracker.artifact(f"{cfg.run.name}-pretrained-policy", "model", ctx.out / "model")
    return {**result.metrics, "pretrain/steps": result.steps, "pretrain/params": n_params}


@register("sft", "Supervised fine-tuning of the policy on (post -> author TL;DR) rows (TRL SFTTrainer).",
          resumable=True, parallel=True)
def sft_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    data_dir = ctx.stage_path("build-data")
    tokenizer = load_tokenizer(data_dir / "tokenizer")
    if cfg.pretrain.steps > 0:
        base = ctx.stage_path("pretrain") / "model"
        if not (base / "config.json").is_file():
            raise RuntimeError(f"pretrain.steps is {cfg.pretrain.steps} but {base} holds no model (that stage ran "
                               "with pretrain.steps 0): rerun it with `python -m pipelines pretrain ... --force`")
        print(f"[sft] starting from the pretrained policy in {base}")
        model = load_causal_lm(base)
    else:
        model = _initial_policy(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[sft] policy: {type(model).__name__}, {n_params / 1e6:.2f}M parameters")
    ctx.tracker.artifact(f"{cfg.run.name}-sft-rows", "dataset", data_dir / "sft", use=True)
    rows = datasets.load_from_disk(str(data_dir / "sft"))
    result = train_sft(model, tokenizer, rows, ctx.out / "model", cfg.sft, report_to=_report_to(ctx), log=ctx.tracker.log,
                       place=ctx.place)
    if result.samples:
        columns = list(result.samples[0].keys())
        ctx.tracker.table("sft/samples", columns, [[s[c] for c in columns] for s in result.samples])
        for s in result.samples[:3]:
            print(f"--- sample\n{s}")
    ctx.tracker.artifact(f"{cfg.run.name}-sft-policy", "model", ctx.out / "model")
    metrics = {**result.metrics, "sft/params": n_params,  # result.metrics are already namespaced sft/...
               "sft/train_rows": result.n_train_rows, "sft/steps": result.global_step}
    write_model_card(ctx, "sft", ctx.out / "model", metrics)
    return metrics


def load_scorer(ctx: Context, model_dir: Path) -> RewardScorer:
    """The reward model as a scorer where the device rule puts frozen models (`run.device`, `run.dtype`), batched
    by `reward.scoring_batch_size`: in PPO it scores every rollout, so it must sit on the accelerator too."""
    p = ctx.placement
    scorer = RewardScorer.from_pretrained(model_dir, batch_size=ctx.cfg.reward.scoring_batch_size, device=p.device,
                                          dtype=p.frozen_dtype)
    ctx.place(scorer.model, "reward model (scoring)", frozen=True)
    return scorer


def _win_probs_for_eval(ctx: Context):
    """The simulated world's per-pair win probabilities for held-out same_post pairs (None for real data)."""
    return sim_win_prob_fn(sim_world(ctx.cfg), ctx.cfg.data.pairs, seed=ctx.cfg.run.seed) if _sim(ctx) else None


def evaluate_and_log(ctx: Context, model_dir: Path, split: str = "test") -> dict:
    """Evaluate the reward model on held-out pairs; print the table; log tables and the reliability plot."""
    pairs = load_pair_sets(ctx.stage_path("build-data"), ctx.cfg.reward.pair_sets)[split]
    if ctx.cfg.scrape.human_eval is not None:
        from data.sources.hub import load_hub_pairs

        human = load_hub_pairs(ctx.cfg.scrape.human_eval).pairs
        human_split = human[split] if split in human else next(iter(human.values()))
        pairs = datasets.concatenate_datasets([pairs, human_split.cast(pairs.features)])
    scorer = load_scorer(ctx, model_dir)
    result = evaluate_reward_model(
        scorer,
        pairs,
        out_dir=ctx.out,
        gold_fn=gold_score if _sim(ctx) else None,
        win_prob_fn=_win_probs_for_eval(ctx),
        reference_fns=REFERENCE_SCORERS if _sim(ctx) else None,
        seed=ctx.cfg.run.seed,
    )
    for name, rows in result.tables.items():
        if rows:
            columns = list(rows[0].keys())
            ctx.tracker.table(f"rm/{name}", columns, [[r[c] for c in columns] for r in rows])
            if name != "confident_errors":
                print(f"\n[{ctx.stage_dir.stage}] {name}\n{format_table(rows)}")
    if result.plot_path:
        ctx.tracker.image("rm/reliability", result.plot_path)
    metrics = dict(result.metrics)
    if _sim(ctx):
        metrics.update(fact_swap_accuracy(ctx, scorer, split))
    warning = weak_reward_warning(metrics)
    if warning:
        print(f"\n[{ctx.stage_dir.stage}] {warning}", flush=True)
    metrics["rm/weak"] = float(warning is not None)
    return metrics


def fact_swap_accuracy(ctx: Context, scorer: RewardScorer, split: str) -> dict:
    """Simulated world: how often the reward model prefers a held-out reference TL;DR over the same TL;DR with
    one fact swapped (`data.sim.probes`); ~0.5 means it does not check facts against the post."""
    rows = datasets.load_from_disk(str(ctx.stage_path("build-data") / "sft"))
    rows = rows[split] if split in rows else rows["validation"]
    probe = fact_swap_pairs(list(rows["prompt"]), list(rows["completion"]), seed=ctx.cfg.run.seed)
    if not len(probe):
        return {}
    wins = (scorer.score(probe.prompts, probe.originals) > scorer.score(probe.prompts, probe.swapped)).float()
    acc, n = float(wins.mean()), len(probe)
    print(f"\n[{ctx.stage_dir.stage}] fact-swap probe: prefers the original TL;DR over one with a swapped fact "
          f"in {acc:.3f} of {n} held-out pairs (0.5 = blind to facts)")
    return {"rm/probe/fact_swap_accuracy": acc, "rm/probe/fact_swap_n": n}


@register("train-reward", "Train the upvote reward model (TRL RewardTrainer, Bradley-Terry) and evaluate it.",
          resumable=True, parallel=True)
def train_reward_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    data_dir = ctx.stage_path("build-data")
    pairs = load_pair_sets(data_dir, cfg.reward.pair_sets)
    sft_rows = datasets.load_from_disk(str(data_dir / "sft"))
    reference = sft_rows["validation"]
    needs_tldrs = cfg.reward.grounding_negatives.source != "comments" or cfg.reward.short_context.steps > 0
    tldrs = sft_rows["train"] if needs_tldrs else None
    if cfg.reward.model_name_or_path:
        source = cfg.reward.model_name_or_path
        tokenizer = load_tokenizer(source)
    elif cfg.reward.init == "scratch":  # the policy's architecture and tokenizer, random weights
        tokenizer = load_tokenizer(data_dir / "tokenizer")
        source = (AutoConfig.from_pretrained(cfg.policy.name_or_path) if cfg.policy.name_or_path
                  else build_tiny_causal_lm(tokenizer, cfg.policy).config)
    else:  # Stiennon et al.: the reward model starts from the SFT policy
        source = ctx.stage_path("sft") / "model"
        tokenizer = load_tokenizer(source)
        ctx.tracker.artifact(f"{cfg.run.name}-sft-policy", "model", source, use=True)
    ctx.tracker.artifact(f"{cfg.run.name}-pairs", "dataset", data_dir / "pairs", use=True)
    result = train_reward_model(
        source, tokenizer, pairs, ctx.out / "model", cfg.reward, report_to=_report_to(ctx),
        reference=reference, log=ctx.tracker.log, tldrs=tldrs, place=ctx.place,
    )
    ctx.tracker.artifact(f"{cfg.run.name}-reward-model", "model", ctx.out / "model")
    metrics = dict(result.metrics)  # already namespaced rm/train/..., rm/eval/...
    metrics.update({"rm_train/pairs": result.n_train_pairs, "rm_train/steps": result.global_step,
                    "rm_train/truncated": result.n_truncated, "rm_train/tokens_per_pair": result.tokens_per_pair,
                    "rm_train/shared_prompt": int(result.batching == "shared_prompt")})
    if result.grounding is not None and result.grounding.n_added:
        metrics.update({"rm_train/grounding_negatives": result.grounding.n_added,
                        "rm_train/grounding_context_matched": result.grounding.context_matched,
                        "rm_train/grounding_inserted": result.grounding.n_inserted})
    state = distributed_state()
    if state.is_main_process:  # the held-out evaluation is one process's job: the others would race on its files
        metrics.update(evaluate_and_log(ctx, ctx.out / "model"))
    state.wait_for_everyone()
    write_model_card(ctx, "reward", ctx.out / "model", metrics)
    return metrics


@register("eval-reward", "Evaluate the reward model on held-out pairs: accuracy, baselines, calibration, gold.")
def eval_reward_stage(ctx: Context) -> dict:
    return evaluate_and_log(ctx, ctx.stage_path("train-reward") / "model")
