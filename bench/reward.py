"""Reward-model training throughput: our length-grouped batches vs RewardTrainer's default random batches.

    python bench/reward.py            # 1,024 simulated pairs, one epoch each way, tiny GPT-2 4 x 256
    python bench/reward.py --quick    # 256 pairs, 2 x 128
    python bench/reward.py --pairs runs/demo/build-data/pairs --tokenizer runs/demo/build-data/tokenizer

Both runs use the same pairs, the same model initialization, the same tokenization (`reward_model.encoding`)
and TRL's `RewardTrainer`; the only difference is the sampler (`train_sampling_strategy="group_by_length"`
with a `length` column vs `"random"`). Printed side by side: the fraction of real (non-pad) tokens per batch
over the epoch, and training pairs per second, with their ratios. Goal: >= 90% non-pad tokens.
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
from reward_model.train import RewardStageConfig, make_reward_config, tokenize_pairs


def simulated_pairs(n_pairs: int, workdir: Path):
    """Pairs from a small simulated Reddit through the real pipeline: world -> records -> data.pairs."""
    from data.pairs import DatasetsConfig, build_datasets
    from data.records import DeletedContent, MalformedRecord, comment_from_json, post_from_json
    from data.shards import ShardWriter
    from data.sim.world import SimWorld, WorldConfig

    world = SimWorld.generate(WorldConfig(seed=0, posts_per_subreddit=max(40, n_pairs // 8)))
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
    built = build_datasets(workdir / "records", workdir / "data", DatasetsConfig(), count_tokens=tok)
    return built.pairs["train"], tok


def batch_fill(trainer: RewardTrainer) -> tuple[float, int]:
    """Real tokens / all tokens over one epoch of the trainer's own dataloader, and the number of batches."""
    real = total = n = 0
    for batch in trainer.get_train_dataloader():
        mask = batch["attention_mask"]  # [2 * pairs, T]: chosen rows then rejected rows
        real += int(mask.sum())
        total += mask.numel()
        n += 1
    return real / total, n


def run(strategy: str, model_dir: Path, tok, train_ds: Dataset, cfg: RewardStageConfig, out: Path) -> dict:
    torch.manual_seed(0)
    model = build_reward_model(model_dir, tok, seed=0)
    args = make_reward_config(cfg, out / strategy, [], has_eval=False)
    args.train_sampling_strategy = strategy
    args.save_strategy = "no"
    args.logging_steps = 10_000
    trainer = RewardTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tok)
    fill, n_batches = batch_fill(trainer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"fill": fill, "batches": n_batches, "seconds": seconds, "pairs_per_s": len(train_ds) / seconds}


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
        train_ds, _ = tokenize_pairs(pairs, tok, cfg.max_length, use_margin=False)
        # Warm-up (allocator, thread pool) so neither timed run pays the one-time costs.
        run("random", tmp / "base", tok, train_ds.select(range(min(32, len(train_ds)))), cfg, tmp)
        default = run("random", tmp / "base", tok, train_ds, cfg, tmp)
        ours = run("group_by_length", tmp / "base", tok, train_ds, cfg, tmp)
        # Best any sampler can do: TRL pads chosen and rejected into one tensor, so each pair costs 2 x its longer side.
        c_len, r_len = [len(x) for x in train_ds["chosen_ids"]], [len(x) for x in train_ds["rejected_ids"]]
        pair_floor = sum(c_len + r_len) / sum(2 * max(c, r) for c, r in zip(c_len, r_len))

    print(f"\nreward-model training, {len(train_ds)} pairs, batch {a.batch_size}, model {spec.n_layer}x{spec.n_embd}, "
          f"{a.threads} thread(s)")
    print(f"{'':28s}{'ours (length-grouped)':>24s}{'TRL default (random)':>24s}{'ratio':>10s}")
    print(f"{'non-pad token fraction':28s}{ours['fill']:>24.3f}{default['fill']:>24.3f}"
          f"{ours['fill'] / default['fill']:>10.2f}")
    print(f"{'training pairs / s':28s}{ours['pairs_per_s']:>24.2f}{default['pairs_per_s']:>24.2f}"
          f"{ours['pairs_per_s'] / default['pairs_per_s']:>10.2f}")
    print(f"{'epoch seconds':28s}{ours['seconds']:>24.1f}{default['seconds']:>24.1f}"
          f"{default['seconds'] / ours['seconds']:>10.2f}")
    print(f"{'pair-level padding only':28s}{pair_floor:>24.3f}{'(upper bound for any sampler)':>34s}")
    print(f"goal >= 0.90 non-pad tokens: {'met' if ours['fill'] >= 0.9 else 'NOT met'}")


if __name__ == "__main__":
    main()
