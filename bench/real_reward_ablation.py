"""Which part of the demo recipe leaves the reward model blind to real votes? Each part removed in turn.

    python -m pipelines scrape --config configs/real.yaml && python -m pipelines build-data --config configs/real.yaml
    python bench/real_reward_ablation.py --data runs/real/build-data --out runs/real-ablation [--rows demo votes_only]
    python bench/real_reward_ablation.py --data runs/real/build-data --extra runs/cassettes/build-data   # + comment pairs

Every row trains a reward model exactly as the `train-reward` stage does (`reward_model.train`, from a policy made by
`policy.sft.pretrain_lm` + `train_sft`) with configs/demo.yaml's settings and the row's overrides, on the real
cross_post pairs of `--data`, and is scored on their VALIDATION split (choices are made there; the test split is
for configs/real.yaml's final number). Step counts are the demo's times `--scale` (the demo's own counts take hours
per row on real prompts on a 2-core CPU); `--scale 1` runs the demo's counts. Printed side by side, per row:
accuracy with a 95% bootstrap CI, the longer-wins / longer-post-wins / later-wins / random baselines on the same
pairs, how strongly the reward follows the response's length (Spearman), and (with `--extra`) the accuracy on
other held-out pairs (e.g. the recorded threads' same-post comment pairs, bench/cassettes_to_dump.py).
Results, commit and seeds go to `<out>/ablation.json`; docs/real-votes.md holds the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipelines import configio  # noqa: E402
from pipelines.config import ExperimentConfig  # noqa: E402
from pipelines.build import load_pair_sets  # noqa: E402
from transformers import set_seed as seed_everything  # noqa: E402  (random, numpy, torch: as the stages seed)
from policy.models import build_tiny_causal_lm, load_tokenizer, train_tokenizer  # noqa: E402
from policy.sft import pretrain_lm, train_sft  # noqa: E402
from reward_model.calibration import bootstrap_means, pairwise_correct  # noqa: E402
from reward_model.evaluate import evaluate_reward_model  # noqa: E402
from reward_model.model import build_reward_model  # noqa: E402
from reward_model.scoring import RewardFileConfig, RewardScorer  # noqa: E402
from reward_model.train import train_reward_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The demo recipe, minus what only the simulator has; data settings come from the build in --data.
BASE = ["scrape.source=dumps", "rl.gold_control=false", "run.wandb.enabled=false",
        "reward.pair_sets=[pairs_cross_post]", "reward.eval_steps=0", "reward.n_reference=128",
        "reward.save_steps=100000", "sft.save_steps=100000", "sft.n_samples=0", "sft.max_eval_rows=32"]
# Steps the demo sets, scaled by --scale (reward.max_steps: the demo trains 1 epoch, ~540 steps of 16 pairs).
SCALED = {"pretrain.steps": 400, "sft.short_context_steps": 2000, "sft.max_steps": 150,
          "reward.short_context.steps": 600, "reward.max_steps": 540}
NO_PARTS = ["reward.short_context.steps=0", "reward.grounding_negatives.enabled=false"]

# name -> (what is removed or changed, overrides on top of the scaled demo recipe). `policy.*`, `pretrain.*`,
# `sft.*`, `tokenizer.*` overrides give the row its own policy; the others share one.
ROWS: dict[str, tuple[str, list[str]]] = {
    "real": ("the recipe of --base (e.g. configs/real.yaml) as written", []),
    "demo": ("the demo recipe (warm-up, grounding negatives, lr 1e-3, SFT init)", []),
    "no_warmup": ("- title-only warm-up (reward.short_context.steps=0)", ["reward.short_context.steps=0"]),
    "no_grounding": ("- grounding negatives", ["reward.grounding_negatives.enabled=false"]),
    "votes_only": ("- warm-up - grounding negatives: vote pairs only", NO_PARTS),
    "votes_lr1e-4": ("votes only, learning rate 1e-4 (demo 1e-3)", NO_PARTS + ["reward.learning_rate=1e-4"]),
    "votes_lr3e-5": ("votes only, learning rate 3e-5", NO_PARTS + ["reward.learning_rate=3e-5"]),
    "votes_4x_steps": ("votes only, 4x the steps", NO_PARTS + ["@reward.max_steps*4"]),
    "votes_no_prompt": ("votes only, response alone (prompt format: no post)", NO_PARTS + ["!no_prompt"]),
    "votes_no_sft": ("votes only, from the pretrained LM (no SFT)", NO_PARTS + ["!from_pretrain"]),
    "votes_scratch": ("votes only, random init (no pretraining, no SFT)", NO_PARTS + ["!from_scratch"]),
    "untrained": ("no reward training at all: the SFT policy with a new random head", ["!untrained"]),
    "votes_4_layers": ("votes only, 4-layer policy (demo 2)", NO_PARTS + ["policy.n_layer=4"]),
    "votes_vocab16k": ("votes only, 16k-token corpus tokenizer (demo 4k)", NO_PARTS + ["tokenizer.vocab_size=16384"]),
}


def commit() -> str:
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def row_config(overrides: list[str], scale: float, seed: int, base: Path | None = None,
               policy_seed: int | None = None) -> tuple[ExperimentConfig, set[str]]:
    """configs/demo.yaml + BASE + scaled steps + the row's plain overrides; returns the row's special flags.
    With `base` (e.g. configs/real.yaml) that config's own steps are used, and `scale` is ignored."""
    if base is not None:
        seeds = [f"run.seed={seed if policy_seed is None else policy_seed}", f"reward.seed={seed}"]
        return configio.load(ExperimentConfig, base, ["run.wandb.enabled=false"] + seeds + overrides), set()
    steps = {k: max(1, round(v * scale)) for k, v in SCALED.items()}
    flags = set()
    plain = []
    for o in overrides:
        if o.startswith("@"):  # "@key*k": a multiple of the scaled step count
            key, k = o[1:].split("*")
            steps[key] = steps[key] * int(k)
        elif o.startswith("!"):
            flags.add(o[1:])
        else:
            plain.append(o)
    run_seed = seed if policy_seed is None else policy_seed
    args = BASE + [f"{k}={v}" for k, v in steps.items()] + [f"run.seed={run_seed}", f"reward.seed={seed}"] + plain
    return configio.load(ExperimentConfig, REPO / "configs" / "demo.yaml", args), flags


def policy_key(cfg: ExperimentConfig) -> str:
    blob = json.dumps([cfg.tokenizer.model_dump(), cfg.policy.model_dump(), cfg.pretrain.model_dump(),
                       cfg.sft.model_dump(), cfg.run.seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def get_tokenizer(cfg: ExperimentConfig, data: Path, work: Path, sft: datasets.DatasetDict):
    """The build's corpus tokenizer, or (another vocabulary size) one trained on the same posts and TL;DRs."""
    built = load_tokenizer(data / "tokenizer")
    if cfg.tokenizer.name_or_path is None and len(built) - 1 <= cfg.tokenizer.vocab_size <= len(built) + 1:
        return built
    path = work / f"tokenizer-{cfg.tokenizer.vocab_size}"
    if not (path / "tokenizer.json").exists():
        texts = [p + c for p, c in zip(sft["train"]["prompt"], sft["train"]["completion"])]
        train_tokenizer(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency).save_pretrained(path)
    return load_tokenizer(path)


def get_policy(cfg: ExperimentConfig, tokenizer, sft: datasets.DatasetDict, work: Path) -> tuple[Path, Path]:
    """(pretrained dir, SFT dir) for the row's policy settings, trained once and reused by later rows."""
    root = work / f"policy-{policy_key(cfg)}"
    pre, final = root / "pretrain", root / "sft"
    if not (final / "config.json").exists():
        seed_everything(cfg.run.seed)
        model = build_tiny_causal_lm(tokenizer, cfg.policy)
        t = time.time()
        pretrain_lm(model, tokenizer, sft, pre, cfg.sft, cfg.pretrain)
        print(f"[ablation] pretrain {cfg.pretrain.steps} steps: {time.time() - t:.0f} s", flush=True)
        t = time.time()
        train_sft(str(pre), tokenizer, sft, final, cfg.sft)
        print(f"[ablation] sft {cfg.sft.short_context_steps}+{cfg.sft.max_steps} steps: {time.time() - t:.0f} s",
              flush=True)
    return pre, final


def no_prompt(ds: datasets.Dataset) -> datasets.Dataset:
    """The prompt reduced to its final "TL;DR:" line: the reward model sees the response alone."""
    cols = {c: ["TL;DR:"] * len(ds) for c in ("prompt", "rejected_prompt") if c in ds.column_names}
    return ds.remove_columns(list(cols)).add_column("prompt", cols["prompt"]).add_column(
        "rejected_prompt", cols.get("rejected_prompt", cols["prompt"]))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by order: enough to see a length bias)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def score_pairs(scorer: RewardScorer, pairs: datasets.Dataset, seed: int, n_boot: int = 2000) -> dict:
    """Accuracy with a 95% bootstrap CI, the baselines on the same pairs, and the reward's length dependence."""
    res = evaluate_reward_model(scorer, pairs, seed=seed)
    correct = pairwise_correct(res.rewards_chosen, res.rewards_rejected)
    boot = bootstrap_means(correct, n_boot, seed)
    m = res.metrics
    out = {"n": len(pairs), "accuracy": float(correct.mean()),
           "ci_low": float(np.percentile(boot, 2.5)), "ci_high": float(np.percentile(boot, 97.5)),
           "longer_wins": m["rm/baseline/longer_wins"], "later_wins": m["rm/baseline/later_wins"],
           "random": m["rm/baseline/random"]}
    if "rejected_post_text" in pairs.column_names:
        words = lambda col: np.array([len(t.split()) for t in pairs[col]], float)  # noqa: E731
        out["longer_post_wins"] = float(pairwise_correct(words("post_text"), words("rejected_post_text")).mean())
    lengths = np.r_[[len(t.split()) for t in pairs["chosen"]], [len(t.split()) for t in pairs["rejected"]]]
    out["length_spearman"] = spearman(np.r_[res.rewards_chosen, res.rewards_rejected], lengths)
    out["reward_std"] = float(np.r_[res.rewards_chosen, res.rewards_rejected].std())
    # Within each pair: how often the model scores the response with more words higher (pairs of equal length left out)
    w_c = np.array([len(t.split()) for t in pairs["chosen"]])
    w_r = np.array([len(t.split()) for t in pairs["rejected"]])
    differ = w_c != w_r
    out["prefers_longer"] = float(((res.rewards_chosen > res.rewards_rejected) == (w_c > w_r))[differ].mean())
    return out


def _bow(prompt: str, response: str, dim: int) -> dict[int, float]:
    """Hashed word presence of the response and of the post, and the log word count of each."""
    out: dict[int, float] = {}
    for part, text in (("tldr", response), ("post", prompt)):
        words = re.findall(r"[a-z']+", text.lower())
        for w in words:
            out[zlib.crc32(f"{part}:{w}".encode()) % dim] = 1.0
        out[zlib.crc32(f"{part}#len".encode()) % dim] = float(np.log1p(len(words)))
    return out


def _bow_diffs(pairs: datasets.Dataset, dim: int) -> torch.Tensor:
    """[pairs, dim] sparse: features of the chosen side minus the rejected side's."""
    rows, cols, vals = [], [], []
    rejected_prompts = pairs["rejected_prompt"] if "rejected_prompt" in pairs.column_names else pairs["prompt"]
    for i, (p, c, rp, r) in enumerate(zip(pairs["prompt"], pairs["chosen"], rejected_prompts, pairs["rejected"])):
        diff = _bow(p, c, dim)
        for k, v in _bow(rp, r, dim).items():
            diff[k] = diff.get(k, 0.0) - v
        rows += [i] * len(diff)
        cols += list(diff)
        vals += list(diff.values())
    return torch.sparse_coo_tensor([rows, cols], torch.tensor(vals, dtype=torch.float32), (len(pairs), dim)).coalesce()


def bag_of_words_baseline(train: datasets.Dataset, held_out: datasets.Dataset, seed: int, dim: int = 2**16,
                          l2: float = 1e-2, steps: int = 200) -> float:
    """A text-only LEARNED baseline: Bradley-Terry logistic regression on hashed words (and word counts) of the
    response and its post, fit on the training pairs (full batch, Adam); its accuracy on `held_out` says how much
    of the votes plain word statistics predict, i.e. what a reward model should at least reach."""
    x, x_held = _bow_diffs(train, dim), _bow_diffs(held_out, dim)
    g = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(x.shape[0], generator=g) < 0.5, -1.0, 1.0)  # both label directions seen
    w = torch.zeros(dim, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(steps):
        z = torch.sparse.mm(x, w[:, None])[:, 0] * sign
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, (sign > 0).float()) + l2 * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        z = torch.sparse.mm(x_held, w[:, None])[:, 0]
    return float(pairwise_correct(z.numpy(), np.zeros(len(z))).mean())


def run_row(name: str, args, data: Path, work: Path, pairs, sft, extra) -> dict:
    what, overrides = ROWS[name]
    cfg, flags = row_config(overrides, args.scale, args.seed, args.base, args.policy_seed)
    tokenizer = get_tokenizer(cfg, data, work, sft)
    rm_dir = work / f"rm-{name}-s{args.seed}" if args.policy_seed is None else work / f"rm-{name}-s{args.seed}-p{args.policy_seed}"
    if flags & {"from_scratch"} or cfg.reward.init == "scratch":
        source = build_tiny_causal_lm(tokenizer, cfg.policy).config
    else:
        pre, final = get_policy(cfg, tokenizer, sft, work)
        source = pre if "from_pretrain" in flags else final
    train_pairs = datasets.DatasetDict({"train": pairs["train"]})
    val = pairs[args.split]
    if "no_prompt" in flags:
        train_pairs = datasets.DatasetDict({"train": no_prompt(pairs["train"])})
        val = no_prompt(val)
    if "untrained" in flags and not (rm_dir / "reward_config.json").exists():
        # What a reward model that learned nothing from the votes scores: its length bias is its random head's.
        build_reward_model(source, tokenizer, seed=cfg.reward.seed).save_pretrained(rm_dir)
        tokenizer.save_pretrained(rm_dir)
        RewardFileConfig(max_length=cfg.reward.max_length).save(rm_dir)
        (rm_dir / "train_metrics.json").write_text("{}")
    if not (rm_dir / "reward_config.json").exists():
        shutil.rmtree(rm_dir, ignore_errors=True)
        seed_everything(cfg.run.seed)
        t = time.time()
        result = train_reward_model(source, tokenizer, train_pairs, rm_dir, cfg.reward,
                                    reference=sft["validation"], tldrs=sft["train"])
        print(f"[ablation] {name}: reward model {result.global_step} steps in {time.time() - t:.0f} s, "
              f"final train loss {result.metrics.get('rm/train/train_loss', float('nan')):.4f}", flush=True)
        (rm_dir / "train_metrics.json").write_text(json.dumps(result.metrics, indent=1))
    scorer = RewardScorer.from_pretrained(rm_dir, batch_size=64)
    row = {"row": name, "what": what, "overrides": overrides, "seed": args.seed, "split": args.split,
           "policy_seed": cfg.run.seed,
           "train_loss": json.loads((rm_dir / "train_metrics.json").read_text()).get("rm/train/train_loss"),
           **score_pairs(scorer, val, args.seed)}
    if extra is not None:
        ex = score_pairs(scorer, no_prompt(extra) if "no_prompt" in flags else extra, args.seed)
        row.update({f"extra_{k}": ex[k] for k in ("n", "accuracy", "ci_low", "ci_high", "longer_wins", "length_spearman",
                                                            "prefers_longer")})
    return row


def print_table(rows: list[dict]) -> None:
    cols = [("row", "{}"), ("accuracy", "{:.3f}"), ("ci_low", "{:.3f}"), ("ci_high", "{:.3f}"),
            ("longer_wins", "{:.3f}"), ("longer_post_wins", "{:.3f}"), ("later_wins", "{:.3f}"), ("random", "{:.3f}"),
            ("length_spearman", "{:+.2f}"), ("train_loss", "{:.4f}")]
    if any("extra_accuracy" in r for r in rows):
        cols += [("extra_accuracy", "{:.3f}"), ("extra_longer_wins", "{:.3f}"), ("extra_length_spearman", "{:+.2f}")]
    cells = [[c for c, _ in cols]] + [[f.format(r[c]) if r.get(c) is not None else "-" for c, f in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    for line in cells:
        print("  ".join(v.rjust(w) for v, w in zip(line, widths)))


def markdown_table(rows: list[dict]) -> str:
    """The rows as the markdown table of docs/real-votes.md."""
    head = ("| row | seed | accuracy [95% CI] | longer-wins | longer-post | later | random | length rho | train loss "
            "| comment pairs (longer-wins) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        loss = f"{r['train_loss']:.4f}" if r.get("train_loss") is not None else "-"
        extra = (f"{r['extra_accuracy']:.3f} ({r['extra_longer_wins']:.3f})" if "extra_accuracy" in r else "-")
        if "extra_prefers_longer" in r:
            extra += f", prefers longer {r['extra_prefers_longer']:.2f}"
        rho_extra = f" ({r['extra_length_spearman']:+.2f})" if "extra_length_spearman" in r else ""
        lines.append(f"| {r['row']} | {r['seed']} | {r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | "
                     f"{r['longer_wins']:.3f} | {r.get('longer_post_wins', float('nan')):.3f} | {r['later_wins']:.3f} | "
                     f"{r['random']:.3f} | {r['length_spearman']:+.2f}{rho_extra} | {loss} | {extra} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a build-data folder with pairs_cross_post, sft, tokenizer")
    p.add_argument("--extra", type=Path, default=None, help="a build-data folder whose same-post `pairs` (all "
                   "splits) are a second held-out check, e.g. the recorded threads")
    p.add_argument("--out", type=Path, default=Path("runs/real-ablation"))
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--scale", type=float, default=0.15, help="fraction of the demo's step counts (default 0.15)")
    p.add_argument("--seed", type=int, default=0, help="run.seed and reward.seed of every row")
    p.add_argument("--policy-seed", type=int, default=None, help="run.seed of the policy stages (default --seed), "
                   "so reward seeds can share one policy")
    p.add_argument("--base", type=Path, default=None, help="a config whose own settings make row `real` "
                   "(e.g. configs/real.yaml); without it rows are the scaled demo recipe")
    p.add_argument("--split", default="validation", choices=["validation", "test"],
                   help="held-out split scored (test: once, for the final number)")
    p.add_argument("--max-val-pairs", type=int, default=None, help="score at most this many validation pairs")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = load_pair_sets(args.data, ["pairs_cross_post"])
    if args.max_val_pairs and len(pairs["validation"]) > args.max_val_pairs:
        pairs["validation"] = pairs["validation"].shuffle(seed=0).select(range(args.max_val_pairs))
    sft = datasets.load_from_disk(str(args.data / "sft"))
    extra = None
    if args.extra is not None:
        e = datasets.load_from_disk(str(args.extra / "pairs"))
        extra = datasets.concatenate_datasets([e[s] for s in e])
    results_path = args.out / "ablation.json"
    key = lambda r: (r["row"], r["seed"], r.get("split", "validation"), r.get("policy_seed", r["seed"]))  # noqa: E731
    done = {key(r): r for r in json.loads(results_path.read_text())["rows"]} if results_path.exists() else {}
    rows = []
    for name in args.rows:
        policy_seed = args.seed if args.policy_seed is None else args.policy_seed
        row = done.get((name, args.seed, args.split, policy_seed)) or run_row(name, args, args.data, args.out,
                                                                              pairs, sft, extra)
        rm_dir = args.out / (f"rm-{name}-s{args.seed}" + (f"-p{args.policy_seed}" if args.policy_seed is not None else ""))
        if extra is not None and "extra_prefers_longer" not in row and (rm_dir / "reward_config.json").exists():
            ex = score_pairs(RewardScorer.from_pretrained(rm_dir, batch_size=64),
                             no_prompt(extra) if "!no_prompt" in ROWS[name][1] else extra, args.seed)
            row.update(extra_length_spearman=ex["length_spearman"],  # rows scored before these columns existed
                       extra_prefers_longer=ex["prefers_longer"])
        done[key(row)] = row
        rows.append(row)
        saved = json.loads(results_path.read_text()) if results_path.exists() else {}
        saved.update(commit=commit(), scale=args.scale, data=str(args.data), rows=list(done.values()))
        results_path.write_text(json.dumps(saved, indent=1))
        print_table(rows)
    saved = json.loads(results_path.read_text())
    bow = saved.get("bag_of_words", {}).get(f"{args.split}/seed{args.seed}")
    if bow is None:
        bow = bag_of_words_baseline(pairs["train"], pairs[args.split], args.seed)
    saved.setdefault("bag_of_words", {})[f"{args.split}/seed{args.seed}"] = bow
    results_path.write_text(json.dumps(saved, indent=1))
    print(f"\ncommit {commit()}, seed {args.seed}, scale {args.scale}, {args.split} pairs {len(pairs[args.split])} "
          f"of {args.data}; bag-of-words logistic regression (text-only, learned on the training pairs): {bow:.3f}")
    print_table(rows)
    print("\n" + markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
