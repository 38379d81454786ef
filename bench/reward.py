"""Reward-model training throughput: our batching vs RewardTrainer's default random two-row batches.

    python bench/reward.py            # 1,024 simulated pairs, one epoch each way, tiny GPT-2 4 x 256
    python bench/reward.py --quick    # 256 pairs, 2 x 128
    python bench/reward.py --pairs runs/demo/build-data/pairs --tokenizer runs/demo/build-data/tokenizer

All runs use the same pairs, the same model initialization, the same tokenization (`reward_model.encoding`)
and TRL's `RewardTrainer` (the shared-prompt run its subclass, the same loss). Three ways a pair reaches the model:
  TRL default      two rows per pair (prompt+chosen, prompt+rejected), random batches
  length-grouped   the same two rows, `train_sampling_strategy="group_by_length"` on a `length` column
  shared prompt    one row per pair, the prompt computed once (`reward_model.shared_prompt`), length-grouped:
                   what `train-reward` runs by default (`reward.batching: auto`)
Printed side by side: the fraction of real (non-pad) tokens per batch, the tokens the model runs per pair,
training pairs per second, and each run's speed-up over TRL's default. Goal: >= 90% non-pad tokens.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from datasets import Dataset, load_from_disk
from transformers import AutoTokenizer, logging as hf_logging
from trl import RewardTrainer

from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from reward_model.model import build_reward_model
from reward_model.train import RewardStageConfig, make_reward_config, make_reward_trainer, tokenize_pairs


def simulated_pairs(n_pairs: int, workdir: Path):
    """Pairs from a small simulated Reddit through the real pipeline: world -> records -> pipelines.build."""
    built, tok = simulated_datasets(max(40, n_pairs // 8), workdir)
    return built.pairs["train"], tok


def simulated_datasets(posts_per_subreddit: int, workdir: Path):
    """The data layer's datasets (pairs, SFT rows) of a small simulated Reddit, and a tokenizer trained on it:
    world -> records -> pipelines.build.build_datasets (also used by bench/sft_loss.py)."""
    from pipelines.build import DatasetsConfig, build_datasets
    from data.records import DeletedContent, MalformedRecord, comment_from_json, post_from_json
    from data.shards import ShardWriter
    from data.sim.world import SimWorld, WorldConfig

    world = SimWorld.generate(WorldConfig(seed=0, posts_per_subreddit=posts_per_subreddit))
    now = time.time()
    with ShardWriter(workdir / "records", "posts", 5000) as wp, ShardWriter(workdir / "records", "comments", 50000) as wc:
        for raw, writer, conv in [(p, wp, post_from_json) for p in world.posts] + [
            (c, wc, comment_from_json) for c in world.comments.values()
        ]:
            try:
                writer.add(conv(raw, retrieved_utc=now, salt="bench", source="sim"))
            except (DeletedContent, MalformedRecord):
                pass
    texts = [f"TITLE: {p['title']}\n\nPOST: {p['selftext']}" for p in world.posts]
    texts += [c["body"] for c in world.comments.values()]
    tok = train_tokenizer(texts, vocab_size=4096)
    return build_datasets(workdir / "records", workdir / "data", DatasetsConfig(), count_tokens=tok), tok


def batch_fill(trainer: RewardTrainer) -> tuple[float, int, int]:
    """Real tokens / all tokens over one epoch of the trainer's own dataloader, the number of batches, and all
    tokens (pad included) the model runs."""
    real = total = n = 0
    for batch in trainer.get_train_dataloader():
        if "n_tokens" in batch:  # shared-prompt rows: [pairs, T], the mask is 4D
            real += int(batch["n_tokens"])
        else:  # [2 * pairs, T]: chosen rows then rejected rows
            real += int(batch["attention_mask"].sum())
        total += batch["input_ids"].numel()
        n += 1
    return real / total, n, total


def run(name: str, model_dir: Path, tok, pairs: Dataset, cfg: RewardStageConfig, out: Path) -> dict:
    """One epoch of one batching way (`name` in WAYS) from the same initialization."""
    strategy, batching = WAYS[name]
    torch.manual_seed(0)
    model = build_reward_model(model_dir, tok, seed=0)
    train_ds, _ = tokenize_pairs(pairs, tok, cfg.max_length, use_margin=False, batching=batching)
    args = make_reward_config(cfg, out / name.replace(" ", "-"), [], has_eval=False)
    args.train_sampling_strategy = strategy
    args.save_strategy = "no"
    args.logging_steps = 10_000
    trainer = make_reward_trainer(batching, model, args, tok, train_dataset=train_ds)
    fill, n_batches, tokens = batch_fill(trainer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"fill": fill, "batches": n_batches, "seconds": seconds, "pairs_per_s": len(train_ds) / seconds,
            "tokens_per_pair": tokens / len(train_ds)}


WAYS = {  # name -> (sampler, batching)
    "TRL default": ("random", "pairs"),
    "length-grouped": ("group_by_length", "pairs"),
    "shared prompt": ("group_by_length", "shared_prompt"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="256 pairs and a 2 x 128 model")
    ap.add_argument("--pairs", type=Path, help="a saved pair DatasetDict (uses its train split)")
    ap.add_argument("--tokenizer", type=Path, help="tokenizer directory for --pairs")
    ap.add_argument("--n-pairs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    hf_logging.set_verbosity_error()
    n_pairs = a.n_pairs or (256 if a.quick else 1024)
    spec = ModelSpec(n_layer=2, n_embd=128, n_head=2) if a.quick else ModelSpec(n_layer=4, n_embd=256, n_head=4)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.pairs:
            if not a.tokenizer:
                ap.error("--pairs needs --tokenizer")
            pairs, tok = load_from_disk(str(a.pairs))["train"], AutoTokenizer.from_pretrained(str(a.tokenizer))
        else:
            pairs, tok = simulated_pairs(n_pairs, tmp)
        pairs = pairs.shuffle(seed=0).select(range(min(n_pairs, len(pairs))))
        build_tiny_causal_lm(tok, spec).save_pretrained(tmp / "base")
        cfg = RewardStageConfig(num_train_epochs=1, per_device_train_batch_size=a.batch_size, max_length=640)
        # Warm-up (allocator, thread pool) so no timed run pays the one-time costs.
        run("TRL default", tmp / "base", tok, pairs.select(range(min(32, len(pairs)))), cfg, tmp)
        res = {name: run(name, tmp / "base", tok, pairs, cfg, tmp) for name in WAYS}
        two_rows, _ = tokenize_pairs(pairs, tok, cfg.max_length, use_margin=False)
        # Best any sampler can do with two rows: TRL pads chosen and rejected into one tensor.
        c_len, r_len = [len(x) for x in two_rows["chosen_ids"]], [len(x) for x in two_rows["rejected_ids"]]
        pair_floor = sum(c_len + r_len) / sum(2 * max(c, r) for c, r in zip(c_len, r_len))

    base = res["TRL default"]
    print(f"\nreward-model training, {len(pairs)} pairs, batch {a.batch_size}, model {spec.n_layer}x{spec.n_embd}, "
          f"{a.threads} thread(s)")
    print(f"{'':26s}" + "".join(f"{name:>18s}" for name in WAYS))
    rows = [("non-pad token fraction", "fill", "{:.3f}"), ("tokens run per pair", "tokens_per_pair", "{:.0f}"),
            ("training pairs / s", "pairs_per_s", "{:.2f}"), ("epoch seconds", "seconds", "{:.1f}")]
    for label, key, fmt in rows:
        print(f"{label:26s}" + "".join(f"{fmt.format(r[key]):>18s}" for r in res.values()))
    print(f"{'speed-up vs TRL default':26s}" + "".join(f"{base['seconds'] / r['seconds']:>17.2f}x" for r in res.values()))
    print(f"two-row padding floor (any sampler): {pair_floor:.3f} non-pad")
    best = res["shared prompt"]["fill"]
    print(f"goal >= 0.90 non-pad tokens: {'met' if best >= 0.9 else 'NOT met'} ({best:.3f}, shared prompt)")


if __name__ == "__main__":
    main()
