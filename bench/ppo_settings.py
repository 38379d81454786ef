"""Which PPO settings can raise gold at all? Train PPO from a finished run's SFT policy against the simulated
world's gold score (or the run's reward model) with `ppo.*` overrides, then compare it with SFT on the same
held-out prompts (paired gold gain, bootstrap interval), as eval-policy does. Gold is put on the scale
`rl.gold_control_scale` names, as the ppo stage's gold control is (the reward model's by default;
`rl.gold_control_scale=1.0` is raw gold, what the rows in docs/ppo-settings.md before 782c29a optimized).

Cheaper than rerunning `ppo` + `eval-policy` (no RM-PPO, no baselines, SFT sampled once and cached), so
several settings can be tried on a CPU. Choose settings on `eval_policy.split=validation`, not on the test
prompts that the demo report reads. Example:

    .venv/bin/python bench/ppo_settings.py --run runs/demo --config configs/demo.yaml --reward gold \
        --out runs/ppo-settings/epochs4 ppo.num_ppo_epochs=4 ppo.num_mini_batches=2 ppo.per_device_train_batch_size=8

Prints one JSON line (also `<out>/settings_result.json`): the settings, commit, seed, device, training time,
final KL, the critic's explained variance, and the paired gains over SFT in gold win rate and gold.
`--eval-every N` also evaluates the policy after every N updates (`by_update`: gains and sampled KL to SFT),
which is how the number of updates is chosen. `--quick` (make bench): 2 updates and 16 prompts, a smoke
run. Skips with a message when the run has no finished stages.
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
from pipelines.analysis import batch_gold, gold_parts, load_held_out, scaled_gold_reward
from pipelines.rundir import git_commit, load_finished_sim_run
from policy.evaluate import EvalPolicyConfig, HeldOut, paired_gain, per_prompt_gold, sample_responses
from policy.models import load_causal_lm, load_tokenizer
from policy.ppo import ppo_accelerator, train_ppo
from policy.ppo_config import derive_sizes
from policy.snapshots import PolicySnapshots, list_snapshots
from policy.value_model import build_value_model, critic_init_dir, same_vocab
from reward_model.scoring import RewardScorer


STAGES = ("build-data", "sft", "train-reward")  # what this diagnostic reads from the run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"),
                        help="finished simulated-world run directory (build-data, sft, train-reward)")
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"), help="the run's config YAML")
    parser.add_argument("--reward", choices=["gold", "rm"], default="gold",
                        help="what PPO optimizes: gold (on the scale rl.gold_control_scale names) or the reward model")
    parser.add_argument("--reward-model", type=Path, default=None,
                        help="reward model directory for --reward rm (default: the run's train-reward/model)")
    parser.add_argument("--out", type=Path, default=Path("runs/ppo-settings/default"),
                        help="where this setting's PPO run goes (an interrupted run there resumes from its last "
                        "checkpoint; a finished one is printed again)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="also evaluate the policy after every N updates (0: the final policy only)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where PPO and sampling run (auto: cuda when there is one)")
    parser.add_argument("--quick", action="store_true", help="2 updates, 16 held-out prompts (make bench smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 lets two settings run side by side)")
    parser.add_argument("--summarize", type=Path, default=None, metavar="ROOT",
                        help="train nothing: print the table of every ROOT/*/settings_result.json, seeds averaged")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. ppo.num_ppo_epochs=4")
    return parser.parse_args()


def evaluations(result: dict) -> dict[int, dict]:
    """update -> that policy's evaluation, from one settings_result.json (older files hold the final one only)."""
    if "by_update" in result:
        return {int(u): r for u, r in result["by_update"].items()}
    return {result["updates"]: result}


def summarize(root: Path) -> list[dict]:
    """One row per setting (run, reward, eval split, overrides without `ppo.seed`) and evaluated update: the
    paired gains over SFT and the sampled KL to SFT averaged over seeds, the spread of the gold-win gain across
    seeds, and how many seeds' own 95% intervals exclude zero. Seeds differ in training only (same prompts,
    same sampling draws)."""
    groups: dict[tuple, list[dict]] = {}
    for path in sorted(root.glob("*/settings_result.json")):
        r = json.loads(path.read_text())
        setting = " ".join(o for o in r["overrides"] if not o.startswith("ppo.seed=")) or "(config)"
        groups.setdefault((r.get("run", "?"), r["reward"], r.get("eval_split", "test"), setting), []).append(r)
    rows = []
    for (run, reward, split, setting), results in sorted(groups.items()):
        per_seed = [evaluations(r) for r in results]
        for update in sorted({u for e in per_seed for u in e}):
            got = [e[update] for e in per_seed if update in e]
            wins = [g["gold_win_vs_sft"]["mean"] for g in got]
            kls = [g["kl_to_sft"] for g in got if "kl_to_sft" in g]
            rows.append({
                "run": run, "reward": reward, "split": split, "setting": setting, "update": update, "seeds": len(got),
                "gold_win_gain": round(float(np.mean(wins)), 4), "min": round(min(wins), 4), "max": round(max(wins), 4),
                "seeds_lo_above_0": sum(g["gold_win_vs_sft"]["lo"] > 0 for g in got),
                "gold_gain": round(float(np.mean([g["gold_vs_sft"]["mean"] for g in got])), 4),
                "kl_to_sft": round(float(np.mean(kls)), 2) if kls else "n/a",
            })
    return rows


def print_summary(rows: list[dict]) -> None:
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + " --- |" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")


def sft_baseline(run: Path, sft: torch.nn.Module, tokenizer, held: HeldOut, ecfg: EvalPolicyConfig,
                 scorer: RewardScorer) -> dict[str, np.ndarray]:
    """SFT's per-prompt gold on `held`: the baseline every setting is paired with, sampled once per run and
    eval settings (the cache names the split, prompt count, samples per prompt and seed)."""
    cache = (run / "eval-policy" / f"sft_per_prompt_gold_{ecfg.split}_n{len(held)}_s{ecfg.samples_per_prompt}"
             f"_seed{ecfg.seed}.npz")
    if cache.is_file():
        return dict(np.load(cache))
    torch.manual_seed(ecfg.seed)
    pool = sample_responses(sft, sft, tokenizer, held, ecfg.samples_per_prompt, ecfg, scorer, gold_score, desc="SFT")
    base = per_prompt_gold(pool, held)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")  # settings run side by side may race on the cache
    np.savez(tmp, **base)
    tmp.replace(cache)
    return base


def gains_over_sft(policy, sft, tokenizer, held: HeldOut, ecfg: EvalPolicyConfig, scorer: RewardScorer,
                   base: dict[str, np.ndarray], desc: str) -> dict:
    """Paired gold-win and gold gains of `policy` over SFT on `held`, its KL to SFT on its own samples, and
    gold's parts; sampled with the eval seed so every setting sees the same draws."""
    torch.manual_seed(ecfg.seed)
    res = sample_responses(policy, sft, tokenizer, held, ecfg.samples_per_prompt, ecfg, scorer, gold_score, desc=desc)
    values = per_prompt_gold(res, held)
    return {
        "kl_to_sft": round(float(np.mean(res.logprob - res.ref_logprob)), 3),
        **{f"{key}_vs_sft": {k: round(v, 4) for k, v in paired_gain(values[key], base[key], seed=ecfg.seed).items()}
           for key in ("gold_win", "gold")},
        "gold_parts": {k: round(v, 3) for k, v in gold_parts(res, held).items()},
    }


def main() -> None:
    args = parse_args()
    if args.summarize is not None:
        rows = summarize(args.summarize)
        print_summary(rows) if rows else print(f"no {args.summarize}/*/settings_result.json yet")
        return
    quick = ["ppo.total_episodes=32", "eval_policy.max_prompts=16"]
    cfg = load_finished_sim_run(args.run, args.config, (quick if args.quick else []) + args.overrides, STAGES)
    if cfg is None:
        return
    torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    if args.quick:
        args.out = args.out.with_name(args.out.name + "-quick")
    if (args.out / "settings_result.json").is_file():
        print((args.out / "settings_result.json").read_text())
        return
    sft_dir, rm_dir = args.run / "sft" / "model", args.reward_model or args.run / "train-reward" / "model"
    tokenizer, sft = load_tokenizer(sft_dir), load_causal_lm(sft_dir).to(device)
    scorer = RewardScorer.from_pretrained(rm_dir, batch_size=cfg.reward.scoring_batch_size, device=device)
    ecfg = cfg.eval_policy  # its temperature and lengths are PPO's unless set (resolved on loading)
    held = load_held_out(args.run / "build-data", cfg.eval_policy, scorer, with_gold=True)  # eval-policy's prompts
    base = sft_baseline(args.run, sft, tokenizer, held, ecfg, scorer)

    policy, ref = load_causal_lm(sft_dir), load_causal_lm(sft_dir)
    value = build_value_model(policy, critic_init_dir(cfg.rl.critic_init, rm_dir, same_vocab(tokenizer, scorer.tokenizer)))
    rows = datasets.load_from_disk(str(args.run / "build-data" / "sft"))["train"]
    prompts = rows.select_columns(["prompt", "post_text"])
    gold_shift, gold_scale = None, None
    if args.reward == "gold":  # as the ppo stage's gold control: on the scale rl.gold_control_scale names
        reward, gold_shift, gold_scale = scaled_gold_reward(cfg.rl.gold_control_scale, scorer, rows, seed=cfg.run.seed)
    else:
        reward = scorer
    accelerator = ppo_accelerator(cfg.ppo, device)  # as the ppo stage: ppo.bf16 unset = the launch's setting
    sizes = derive_sizes(cfg.ppo, accelerator.num_processes)
    num_updates = sizes.num_updates
    snapshots = PolicySnapshots(policy, tokenizer, args.out / "snapshots", args.eval_every or num_updates, num_updates)
    started = time.time()
    result = train_ppo(policy, ref, value, tokenizer, prompts, reward, cfg.ppo, args.out, gold_fn=batch_gold,
                       log=(lambda metrics, step: snapshots(step)) if args.eval_every else None,
                       accelerator=accelerator, sizes=sizes)
    seconds = time.time() - started

    by_update = {}
    for update, path in list_snapshots(args.out):
        if update != num_updates:
            snap = load_causal_lm(path).to(device)
            by_update[update] = gains_over_sft(snap, sft, tokenizer, held, ecfg, scorer, base, desc=f"PPO@{update}")
    by_update[num_updates] = gains_over_sft(policy, sft, tokenizer, held, ecfg, scorer, base, desc="PPO")
    late = result.history[len(result.history) // 2:]
    line = {
        "run": str(args.run), "reward": args.reward, "reward_model": str(rm_dir) if args.reward == "rm" else None,
        "gold_shift": gold_shift, "gold_scale": gold_scale,
        "overrides": args.overrides, "commit": git_commit(), "seed": cfg.ppo.seed, "device": device,
        "eval_split": ecfg.split, "eval_prompts": len(held), "eval_samples_per_prompt": ecfg.samples_per_prompt,
        "updates": result.num_updates, "train_seconds": round(seconds, 1),
        # A rerun of a finished training only evaluates: no update history then.
        "kl_final": round(result.history[-1]["objective/kl"], 3) if result.history else None,
        "explained_variance_2nd_half":
            round(float(np.mean([m["ppo/val/explained_variance"] for m in late])), 3) if late else None,
        **{k: v for k, v in by_update[num_updates].items() if k != "kl_to_sft"},
        "by_update": {str(u): {k: v for k, v in r.items() if k != "gold_parts"} for u, r in sorted(by_update.items())},
    }
    (args.out / "settings_result.json").write_text(json.dumps(line, indent=1))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
