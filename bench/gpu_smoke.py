"""GPU smoke test: SFT, reward model and a few PPO updates of a real-architecture model, bf16, one GPU.

    python bench/gpu_smoke.py                 # Pythia-160M-shaped GPT-NeoX built from a config (no download)
    python bench/gpu_smoke.py --tiny --cpu    # the same path at toy sizes on a CPU (to check the script)

Why: the demo runs tiny GPT-2s on a CPU; this checks the same library code (TRL SFTTrainer and
RewardTrainer, our PPO) on the architecture and precision a real run uses, and prints throughput.
The data comes from the simulated world directly (records via the same converters the scraper uses), so
nothing is downloaded and no server is needed. Results go to stdout and `--out` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def build_records(out: Path, posts_per_subreddit: int) -> Path:
    """The simulated world's posts and comments as a records directory, without HTTP."""
    from data.records import DeletedContent, comment_from_json, post_from_json
    from data.shards import ShardWriter
    from data.sim.world import SimWorld, WorldConfig

    world = SimWorld.generate(WorldConfig(posts_per_subreddit=posts_per_subreddit))
    now = world.config.now_utc
    with ShardWriter(out, "posts") as posts, ShardWriter(out, "comments") as comments:
        for raw in world.posts:
            try:
                posts.add(post_from_json(raw, retrieved_utc=now, salt="smoke", source="sim"))
            except DeletedContent:
                pass
        for raw in world.comments.values():
            try:
                comments.add(comment_from_json(raw, retrieved_utc=now, salt="smoke", source="sim"))
            except DeletedContent:
                pass
    return out


def neox_config(tokenizer, tiny: bool):
    """Pythia-160M's shape (12 x 768, rotary, parallel residual) with this tokenizer's ids."""
    from transformers import GPTNeoXConfig

    sizes = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256) if tiny else \
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    return GPTNeoXConfig(
        vocab_size=len(tokenizer), max_position_embeddings=2048, rotary_pct=0.25, use_parallel_residual=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        **sizes,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="toy model and step counts (script check)")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU without bf16")
    ap.add_argument("--out", default=None, help="write the results JSON here")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()
    use_gpu = torch.cuda.is_available() and not args.cpu
    bf16 = use_gpu
    steps = dict(sft=4, rm=4, ppo_episodes=16, batch=8, resp=16) if args.tiny else \
        dict(sft=60, rm=60, ppo_episodes=512, batch=64, resp=53)
    import datasets
    import transformers
    import trl

    from pipelines.build import build_datasets
    from policy.models import train_tokenizer
    from policy.ppo import train_ppo
    from policy.ppo_config import PPOConfig
    from policy.value_model import build_value_model
    from policy.sft import SFTStageConfig, train_sft
    from reward_model.scoring import RewardScorer
    from reward_model.train import RewardStageConfig, train_reward_model

    results: dict = {
        "device": torch.cuda.get_device_name(0) if use_gpu else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
        "datasets": datasets.__version__, "bf16": bf16, "tiny": args.tiny,
    }
    print(json.dumps(results), flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_smoke_"))

    # 1. data: simulated records -> tokenizer -> pairs + SFT rows
    t0 = time.time()
    records = build_records(work / "records", 60 if args.tiny else 300)
    from data.shards import load_records

    texts = [f"{r['title']}\n{r['selftext']}" for r in load_records(records, "posts")]
    tokenizer = train_tokenizer(texts, vocab_size=2048 if args.tiny else 8192)
    tokenizer.save_pretrained(str(work / "tokenizer"))
    built = build_datasets(records, work / "data", count_tokens=tokenizer)
    results["data_seconds"] = round(time.time() - t0, 1)
    results["pairs_train"], results["sft_train"] = len(built.pairs["train"]), len(built.sft["train"])

    # 2. SFT (TRL SFTTrainer) on a real-architecture model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(neox_config(tokenizer, args.tiny))
    results["params_millions"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    sft_cfg = SFTStageConfig(max_steps=steps["sft"], per_device_train_batch_size=16, learning_rate=3e-4, bf16=bf16,
                             eval_steps=0, n_samples=2, save_steps=10_000, max_length=640)
    if not use_gpu:
        sft_cfg = sft_cfg.model_copy(update={"per_device_train_batch_size": 4})
    if use_gpu:
        torch.cuda.reset_peak_memory_stats()
    sft = train_sft(model, tokenizer, built.sft, work / "sft", sft_cfg, report_to=[])
    results["sft_seconds"] = round(sft.train_runtime_s, 1)
    results["sft_rows_per_s"] = round(steps["sft"] * sft_cfg.per_device_train_batch_size / sft.train_runtime_s, 1)
    results["sft_sample"] = sft.samples[0]["generated"][:200] if sft.samples else ""
    print(json.dumps({k: results[k] for k in ("sft_seconds", "sft_rows_per_s")}), flush=True)

    # 3. reward model (TRL RewardTrainer) initialized from the SFT policy
    rm_cfg = RewardStageConfig(max_steps=steps["rm"], per_device_train_batch_size=16 if use_gpu else 4,
                               learning_rate=1e-4, bf16=bf16, eval_steps=0, save_steps=10_000, n_reference=64,
                               max_eval_pairs=64)
    rm = train_reward_model(work / "sft", tokenizer, built.pairs, work / "rm", rm_cfg, report_to=[],
                            reference=built.sft["validation"])
    results["rm_seconds"] = round(rm.train_runtime_s, 1)
    results["rm_pairs_per_s"] = round(steps["rm"] * rm_cfg.per_device_train_batch_size / rm.train_runtime_s, 1)
    results["rm_metrics"] = {k: v for k, v in rm.metrics.items() if isinstance(v, float)}
    print(json.dumps({k: results[k] for k in ("rm_seconds", "rm_pairs_per_s")}), flush=True)

    # 4. a few PPO updates against the reward model, bf16 autocast on the GPU
    scorer = RewardScorer.from_pretrained(work / "rm", batch_size=64, device="cuda" if use_gpu else "cpu",
                                          dtype=torch.bfloat16 if bf16 else torch.float32)
    policy = AutoModelForCausalLM.from_pretrained(str(work / "sft"))
    ref = AutoModelForCausalLM.from_pretrained(str(work / "sft"))
    value = build_value_model(policy, work / "rm")
    ppo_cfg = PPOConfig(total_episodes=steps["ppo_episodes"], per_device_train_batch_size=steps["batch"] // 2,
                        gradient_accumulation_steps=2, local_rollout_forward_batch_size=steps["batch"],
                        response_length=steps["resp"], bf16=bf16, learning_rate=3e-6, save_every=10_000)
    t0 = time.time()
    ppo = train_ppo(policy, ref, value, tokenizer, built.sft["train"], scorer.score, ppo_cfg, work / "ppo")
    seconds = time.time() - t0
    results["ppo_updates"] = ppo.num_updates
    results["ppo_seconds"] = round(seconds, 1)
    results["ppo_episodes_per_s"] = round(steps["ppo_episodes"] / seconds, 2)
    last = ppo.history[-1]
    results["ppo_last"] = {k: round(float(last[k]), 4) for k in ("objective/scores", "objective/kl", "time/generate",
                                                                "time/train") if k in last}
    if use_gpu:
        results["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(results, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
