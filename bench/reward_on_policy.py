"""Which reward model orders the policy's own samples as gold does? Side by side, several reward models on one
pool of SFT samples from a finished simulated-world run: the only comparisons best-of-n and PPO ever ask for.

    .venv/bin/python bench/reward_on_policy.py --run runs/demo --config configs/demo.yaml \
        runs/demo/train-reward/model runs/insert/train-reward/model

The SFT policy samples `--samples` responses for each of eval-policy's held-out prompts once (cached under
`<run>/eval-policy/`, so every reward model sees the same texts). For each reward model it prints one row:
its held-out vote accuracy and gap to the Bayes ceiling (from its stage's metrics.json), the on-policy
agreement with gold (within-prompt pairs, 95% bootstrap over prompts), how its score follows gold's parts
within a prompt (facts stated, facts the post lacks, precision, coverage), and the gold that best-of-n picks
by it gain over a random sample (paired over prompts), beside what best-of-n by gold itself gains (the
oracle) and the correlation rho that the agreement implies for jointly normal scores
(`policy.reward_diagnostics.implied_correlation`). Also written to `--out` as JSON. `--quick`: 16
prompts x 4 samples, a smoke run. Skips with a message when the run has no finished stages.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from data.sim.gold import gold_score
from pipelines.analysis import load_held_out, on_policy_reward_check
from pipelines.config import ExperimentConfig
from pipelines.rundir import git_commit, load_finished_sim_run
from policy.evaluate import HeldOut, Responses, best_of_n_weights, paired_gain, sample_responses, score_responses
from policy.models import load_causal_lm, load_tokenizer
from reward_model.scoring import RewardScorer

FEATURES = ("n_summary_facts", "n_hallucinated", "precision", "coverage")


def sft_pool(run: Path, cfg: ExperimentConfig, held: HeldOut, scorer: RewardScorer, samples: int) -> Responses:
    """`samples` SFT responses per held-out prompt, sampled once per run and settings (cached as JSON)."""
    ecfg = cfg.eval_policy
    cache = run / "eval-policy" / f"sft_pool_n{len(held)}_s{samples}_seed{ecfg.seed}.json"
    if cache.is_file():  # only the texts are kept: every reward model (and gold) scores them afresh below
        texts = json.loads(cache.read_text())["texts"]
        zeros = np.zeros(len(texts))
        return Responses(texts, zeros, np.ones(len(texts), bool), zeros, zeros, 0.0, samples)
    sft_dir = run / "sft" / "model"
    tokenizer, sft = load_tokenizer(sft_dir), load_causal_lm(sft_dir)
    torch.manual_seed(ecfg.seed)
    pool = sample_responses(sft, sft, tokenizer, held, samples, ecfg, scorer, gold_score, desc=f"SFT x{samples}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"texts": pool.texts}))
    return pool


def vote_metrics(rm_dir: Path) -> dict[str, float]:
    """Held-out vote accuracy and gap to the Bayes ceiling from the reward stage's metrics.json, if any."""
    path = rm_dir.parent / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    keys = {"vote_accuracy": "rm/accuracy", "gap_to_ceiling": "rm/gap_to_ceiling"}
    return {name: metrics[key] for name, key in keys.items() if key in metrics}


def best_of_n_gain(pool: Responses, n: int, seed: int, by_gold: bool = False) -> dict[str, float]:
    """Gold of best-of-n by the reward model (or by gold itself: the oracle) minus the gold of one random
    sample, paired over prompts."""
    gold = pool.grid(pool.gold)
    picked = (best_of_n_weights(gold if by_gold else pool.grid(pool.rm), n) * gold).sum(1)
    return paired_gain(picked, gold.mean(1), seed=seed)


STAGES = ("build-data", "sft", "train-reward")  # what this diagnostic reads from the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reward_models", nargs="*", type=Path,
                        help="reward model directories (default: the run's train-reward/model)")
    parser.add_argument("--run", type=Path, default=Path("runs/demo"),
                        help="finished simulated-world run directory (build-data, sft, train-reward)")
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"), help="the run's config YAML")
    parser.add_argument("--samples", type=int, default=8, help="SFT samples per held-out prompt")
    parser.add_argument("--out", type=Path, default=Path("runs/reward-on-policy/result.json"), help="JSON result")
    parser.add_argument("--quick", action="store_true", help="16 prompts x 4 samples (make bench smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    cfg = load_finished_sim_run(args.run, args.config, ["eval_policy.max_prompts=16"] if args.quick else [], STAGES)
    if cfg is None:
        return
    torch.set_num_threads(args.threads)
    samples = 4 if args.quick else args.samples
    if samples < 2:
        raise SystemExit(f"--samples must be at least 2 (pairs within a prompt); got {samples}")
    rm_dirs = args.reward_models or [args.run / "train-reward" / "model"]
    missing = [str(d) for d in rm_dirs if not (d / "config.json").is_file()]
    if missing:
        raise SystemExit(f"not a reward model directory (no config.json): {missing}")

    first = RewardScorer.from_pretrained(rm_dirs[0], batch_size=cfg.reward.scoring_batch_size)
    held = load_held_out(args.run / "build-data", cfg.eval_policy, first, with_gold=True)
    pool = sft_pool(args.run, cfg, held, first, samples)
    rows_of = [i for i in range(len(held)) for _ in range(samples)]
    commit = git_commit()
    results, corr_gold, oracle = [], {}, {}
    for rm_dir in rm_dirs:
        scorer = RewardScorer.from_pretrained(rm_dir, batch_size=cfg.reward.scoring_batch_size)
        score_responses(pool, held, rows_of, scorer, gold_score)
        check = on_policy_reward_check(pool, held)
        corr_gold = {f: check["corr_gold"][f] for f in FEATURES}  # gold's side: the same for every reward model
        if not oracle:  # gold's own best-of-n: the same for every reward model, so computed once
            oracle = {n: best_of_n_gain(pool, n, cfg.eval_policy.seed, by_gold=True) for n in (2, samples)}
        gains = {n: best_of_n_gain(pool, n, cfg.eval_policy.seed) for n in (2, samples)}
        results.append({
            "reward_model": str(rm_dir), **vote_metrics(rm_dir), "on_policy": check["agreement"],
            "implied_rho": check["agreement"]["implied_rho"],
            "corr_rm": {f: check["corr_rm"][f] for f in FEATURES},
            "best_of_n_gold_gain": gains,
            "share_of_oracle_gain": {n: gains[n]["mean"] / oracle[n]["mean"] if oracle[n]["mean"] > 0 else float("nan")
                                     for n in gains},
        })
    out = {"commit": commit, "run": str(args.run), "prompts": len(held), "samples": samples,
           "seed": cfg.eval_policy.seed, "corr_gold": corr_gold, "oracle_best_of_n_gold_gain": oracle,
           "reward_models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    short = {"n_summary_facts": "facts", "n_hallucinated": "wrong", "precision": "prec", "coverage": "cov"}
    print(f"{len(held)} prompts x {samples} SFT samples, commit {commit}; within-prompt corr of gold: "
          + " ".join(f"{short[f]} {v:+.2f}" for f, v in corr_gold.items())
          + f"; best-of-n by gold itself gains bo2 {oracle[2]['mean']:+.3f}, bo{samples} {oracle[samples]['mean']:+.3f}")
    print(f"{'reward model':<44} {'votes':>6} {'gap':>6} {'on-policy [95% CI]':>22} "
          + " ".join(f"{short[f]:>6}" for f in FEATURES) + f" {'rho':>5} {'bo2 gold':>9} {'bo' + str(samples) + ' gold':>9} {'of oracle':>9}")
    for r in results:
        a, bon = r["on_policy"], r["best_of_n_gold_gain"]
        print(f"{r['reward_model'][-44:]:<44} {r.get('vote_accuracy', float('nan')):>6.3f} "
              f"{r.get('gap_to_ceiling', float('nan')):>6.3f} "
              f"{a['accuracy']:>8.3f} [{a['accuracy_ci_low']:.3f}, {a['accuracy_ci_high']:.3f}] "
              + " ".join(f"{r['corr_rm'][f]:>+6.2f}" for f in FEATURES)
              + f" {r['implied_rho']:>+5.2f} {bon[2]['mean']:>+9.3f} {bon[samples]['mean']:>+9.3f}"
              + f" {r['share_of_oracle_gain'][samples]:>9.2f}")


if __name__ == "__main__":
    main()
