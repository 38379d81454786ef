"""Which PPO settings can raise gold at all? Train PPO from a finished run's SFT policy against the simulated
world's gold score (or the run's reward model) with `ppo.*` overrides, then compare it with SFT on the same
held-out prompts (paired gold gain, bootstrap interval), as eval-policy does.

Cheaper than rerunning `ppo` + `eval-policy` (no RM-PPO, no baselines, no snapshots, SFT sampled once and
cached), so several settings can be tried on a CPU. Example:

    .venv/bin/python bench/ppo_settings.py --run runs/demo --config configs/demo.yaml --reward gold \
        --out runs/ppo-settings/epochs4 ppo.num_ppo_epochs=4 ppo.num_mini_batches=2 ppo.per_device_train_batch_size=8

Prints one JSON line (also `<out>/settings_result.json`): the settings, commit, seed, training time, final KL,
the critic's explained variance, and the paired gains over SFT in gold win rate and gold. `--quick` (make
bench): 2 updates and 16 prompts, a smoke run. Skips with a message when the run has no finished stages.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from data.sim.gold import gold_score
from pipelines.rundir import git_commit, load_finished_sim_run
from pipelines.stages.rl import batch_gold, critic_init_dir, gold_parts, load_held_out, same_vocab
from policy.evaluate import paired_gain, per_prompt_gold, sample_responses, settings
from policy.models import load_causal_lm, load_tokenizer
from policy.ppo import build_value_model, train_ppo
from reward_model.scoring import RewardScorer


STAGES = ("build-data", "sft", "train-reward")  # what this diagnostic reads from the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"),
                        help="finished simulated-world run directory (build-data, sft, train-reward)")
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"), help="the run's config YAML")
    parser.add_argument("--reward", choices=["gold", "rm"], default="gold", help="what PPO optimizes")
    parser.add_argument("--reward-model", type=Path, default=None,
                        help="reward model directory for --reward rm (default: the run's train-reward/model)")
    parser.add_argument("--out", type=Path, default=Path("runs/ppo-settings/default"),
                        help="where this setting's PPO run goes (an interrupted run there resumes from its last "
                        "checkpoint; a finished one is printed again)")
    parser.add_argument("--quick", action="store_true", help="2 updates, 16 held-out prompts (make bench smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 lets two settings run side by side)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. ppo.num_ppo_epochs=4")
    args = parser.parse_args()
    quick = ["ppo.total_episodes=32", "eval_policy.max_prompts=16"]
    cfg = load_finished_sim_run(args.run, args.config, (quick if args.quick else []) + args.overrides, STAGES)
    if cfg is None:
        return
    torch.set_num_threads(args.threads)
    if args.quick:
        args.out = args.out.with_name(args.out.name + "-quick")
    if (args.out / "settings_result.json").is_file():
        print((args.out / "settings_result.json").read_text())
        return
    sft_dir, rm_dir = args.run / "sft" / "model", args.reward_model or args.run / "train-reward" / "model"
    tokenizer, sft = load_tokenizer(sft_dir), load_causal_lm(sft_dir)
    scorer = RewardScorer.from_pretrained(rm_dir, batch_size=cfg.reward.scoring_batch_size)
    ecfg = settings(cfg.eval_policy, cfg.ppo.temperature, cfg.ppo.response_length, cfg.ppo.max_prompt_length)
    held = load_held_out(args.run / "build-data", cfg.eval_policy, scorer, with_gold=True)  # eval-policy's prompts

    # SFT once per run and eval settings: its per-prompt gold is the baseline every setting is paired with.
    cache = args.run / "eval-policy" / f"sft_per_prompt_gold_n{len(held)}_s{ecfg.samples_per_prompt}_seed{ecfg.seed}.npz"
    if cache.is_file():
        base = dict(np.load(cache))
    else:
        torch.manual_seed(ecfg.seed)
        pool = sample_responses(sft, sft, tokenizer, held, ecfg.samples_per_prompt, ecfg, scorer, gold_score, desc="SFT")
        base = per_prompt_gold(pool, held)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **base)

    policy, ref = load_causal_lm(sft_dir), load_causal_lm(sft_dir)
    value = build_value_model(policy, critic_init_dir(cfg.rl.critic_init, rm_dir, same_vocab(tokenizer, scorer.tokenizer)))
    prompts = datasets.load_from_disk(str(args.run / "build-data" / "sft"))["train"].select_columns(["prompt", "post_text"])
    reward = batch_gold if args.reward == "gold" else scorer
    started = time.time()
    result = train_ppo(policy, ref, value, tokenizer, prompts, reward, cfg.ppo, args.out, gold_fn=batch_gold)
    seconds = time.time() - started

    torch.manual_seed(ecfg.seed)
    res = sample_responses(policy, sft, tokenizer, held, ecfg.samples_per_prompt, ecfg, scorer, gold_score, desc="PPO")
    values = per_prompt_gold(res, held)
    late = result.history[len(result.history) // 2:]
    commit = git_commit()
    line = {
        "reward": args.reward, "reward_model": str(rm_dir) if args.reward == "rm" else None,
        "overrides": args.overrides, "commit": commit, "seed": cfg.ppo.seed,
        "updates": result.num_updates, "train_seconds": round(seconds, 1),
        "kl_final": round(result.history[-1]["objective/kl"], 3),
        "explained_variance_2nd_half": round(float(np.mean([m["ppo/val/explained_variance"] for m in late])), 3),
        **{f"{key}_vs_sft": {k: round(v, 4) for k, v in paired_gain(values[key], base[key], seed=ecfg.seed).items()}
           for key in ("gold_win", "gold")},
        "gold_parts": {k: round(v, 3) for k, v in gold_parts(res, held).items()},
    }
    (args.out / "settings_result.json").write_text(json.dumps(line, indent=1))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
