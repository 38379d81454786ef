"""Throughput against the anchors, one model shape, bf16, the same batch and lengths, and the fraction of the
GPU's ceiling each reaches.

    python bench/gpu_throughput.py                     # Pythia-160M-shaped GPT-NeoX (12 x 768), bf16, one GPU
    python bench/gpu_throughput.py --quick             # 2 x 64 and a few episodes: checks the script on a CPU
    python bench/gpu_throughput.py --peak-tflops 312   # another GPU's dense bf16 peak (default: H200, 989)

Rows, each in its own subprocess (so peak memory is its own):
  ours PPO        policy/ppo.py `train_ppo`, reward = our RewardScorer (texts in, bf16 on the GPU), value model
                  from the reward model, as the ppo stage runs it
  TRL 1.12 PPO    `trl.experimental.ppo.PPOTrainer` (bench/.venv-trl112, made by bench/ppo.py's helper; skipped
                  with the reason when it cannot be made, e.g. offline) on the same models, batch and epochs
  TRL 1.16 RLOO / GRPO   our `policy.trl_baselines` trainers (the baselines of the ppo stage), same episodes
  generate        tokens/s of our sampler (`policy.sampling.generate`) against a plain `model.generate` loop
                  (do_sample, same temperature, exactly response_length new tokens), same prompts and batch
Ceiling: the peak dense bf16 FLOP/s (--peak-tflops; 989 TFLOP/s is the H200's spec) against model FLOPs with
N = parameters outside the input embedding, T = prompt + response tokens of an episode, 2N per token
forward, 6N forward + backward (attention's own FLOPs left out: small at these lengths):
  PPO (ours, TRL 1.12)  N*T*(2 generate + 2 old log-probs + 2 reference + 2 value + 2 reward + 12*epochs train)
  RLOO / GRPO           N*T*(2 generate + 2 reference + 2 reward + 6 train)  (one pass per completion)
  generation            2N per token, prompt tokens included
fraction = achieved model FLOP/s / peak. On a CPU the fraction is against the GPU peak unless --peak-tflops says
otherwise: the --quick run checks the script, not the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sizes(quick: bool) -> dict:
    if quick:
        return dict(n_layer=2, n_embd=64, n_head=4, vocab=512, posts=20, total_episodes=32, batch=16, micro=8,
                    mini_batches=2, ppo_epochs=1, response_length=8, max_prompt_length=64, gen_batch=8, gen_repeats=2)
    return dict(n_layer=12, n_embd=768, n_head=12, vocab=4096, posts=200, total_episodes=512, batch=64, micro=16,
                mini_batches=2, ppo_epochs=4, response_length=53, max_prompt_length=256, gen_batch=64, gen_repeats=3)


# ----------------------------------------------------------------------------------------------------------
# setup: tokenizer on simulated posts, policy and reward model of one shape, prompts
# ----------------------------------------------------------------------------------------------------------
def build_artifacts(work: Path, s: dict) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification

    from data.prompts import PROMPT_TEMPLATE
    from data.sim.world import SimWorld, WorldConfig
    from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
    from reward_model.scoring import RewardFileConfig

    world = SimWorld.generate(WorldConfig(posts_per_subreddit=s["posts"]))
    posts = [p for p in world.posts if p.get("selftext")]
    tok = train_tokenizer([f"{p['title']}\n{p['selftext']}" for p in posts], vocab_size=s["vocab"])
    spec = ModelSpec(architecture="gpt_neox", n_layer=s["n_layer"], n_embd=s["n_embd"], n_head=s["n_head"],
                     n_positions=2048)
    policy = build_tiny_causal_lm(tok, spec)
    policy.save_pretrained(work / "policy")
    tok.save_pretrained(work / "policy")
    torch.manual_seed(1)
    rm = AutoModelForSequenceClassification.from_config(policy.config.__class__(**{**policy.config.to_dict(), "num_labels": 1}))
    rm.config.pad_token_id = tok.pad_token_id
    rm.save_pretrained(work / "reward_model")
    tok.save_pretrained(work / "reward_model")
    RewardFileConfig().save(work / "reward_model")
    prompts = [PROMPT_TEMPLATE.format(subreddit=p["subreddit"], title=p["title"], post=p["selftext"]) for p in posts]
    (work / "prompts.json").write_text(json.dumps(prompts))
    lengths = [min(len(tok(p, add_special_tokens=False)["input_ids"]), s["max_prompt_length"]) for p in prompts]
    embed = policy.get_input_embeddings().weight.numel()
    return {"params": sum(p.numel() for p in policy.parameters()), "N": sum(p.numel() for p in policy.parameters()) - embed,
            "prompt_tokens_mean": statistics.fmean(lengths), "prompts": len(prompts), "vocab": len(tok)}


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _peak_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn):
    """(fn(), wall seconds), with the GPU's queued work finished on both sides of the clock."""
    _sync()
    start = time.perf_counter()
    result = fn()
    _sync()
    return result, time.perf_counter() - start


def _episode_rate(s: dict, wall: float) -> dict:
    """The row every training worker reports: episodes, wall time, episodes/s, peak GPU memory."""
    return {"episodes": s["total_episodes"], "wall_s": wall, "episodes_per_s": s["total_episodes"] / wall,
            "peak_gb": _peak_gb()}


# ----------------------------------------------------------------------------------------------------------
# workers (each in its own process)
# ----------------------------------------------------------------------------------------------------------
def run_ours_ppo(work: Path, s: dict) -> dict:
    import torch

    from policy.device import place
    from policy.models import load_causal_lm, load_tokenizer
    from policy.ppo import train_ppo
    from policy.ppo_config import PPOConfig
    from policy.value_model import build_value_model
    from reward_model.scoring import RewardScorer

    dev, gpu = _device(), torch.cuda.is_available()
    tok = load_tokenizer(work / "policy")
    policy = place(load_causal_lm(work / "policy"), dev)
    ref = place(load_causal_lm(work / "policy"), dev)
    value = place(build_value_model(policy, work / "reward_model"), dev)
    scorer = RewardScorer.from_pretrained(work / "reward_model", batch_size=s["batch"], device=dev,
                                          dtype=torch.bfloat16 if gpu else torch.float32)
    cfg = PPOConfig(
        total_episodes=s["total_episodes"], per_device_train_batch_size=s["micro"],
        gradient_accumulation_steps=s["batch"] // s["micro"] // s["mini_batches"], num_mini_batches=s["mini_batches"],
        num_ppo_epochs=s["ppo_epochs"], local_rollout_forward_batch_size=s["batch"], response_length=s["response_length"],
        max_prompt_length=s["max_prompt_length"], temperature=0.7, kl_coef=0.05, missing_eos_penalty=-1.0,
        learning_rate=3e-6, save_every=10_000, num_samples=0, bf16=gpu,
    )
    prompts = json.loads((work / "prompts.json").read_text())
    out = Path(tempfile.mkdtemp(prefix="ours-", dir=work))
    result, wall = _timed(lambda: train_ppo(policy, ref, value, tok, prompts, scorer, cfg, out, device=dev))
    phases = {k: statistics.fmean(h[k] for h in result.history) for k in ("time/generate", "time/score", "time/forward",
                                                                         "time/train", "time/step")}
    return {**_episode_rate(s, wall), "phases_s_per_update": phases}


def run_trl112_ppo(work: Path, s: dict) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    assert trl.__version__ == "1.12.0", trl.__version__
    gpu = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(work / "policy", padding_side="left")
    prompts = json.loads((work / "prompts.json").read_text())
    ids = [tok(p, add_special_tokens=False)["input_ids"][-s["max_prompt_length"]:] for p in prompts]
    args = PPOConfig(
        output_dir=str(work / "trl112-out"), total_episodes=s["total_episodes"], per_device_train_batch_size=s["micro"],
        gradient_accumulation_steps=s["batch"] // s["micro"] // s["mini_batches"], num_mini_batches=s["mini_batches"],
        num_ppo_epochs=s["ppo_epochs"], local_rollout_forward_batch_size=s["batch"], response_length=s["response_length"],
        # TRL 1.12 SUBTRACTS its missing_eos_penalty from the score (ours replaces the score): a positive 1.0.
        temperature=0.7, kl_coef=0.05, missing_eos_penalty=1.0, learning_rate=3e-6, stop_token="eos",
        num_sample_generations=0, save_strategy="no", report_to="none", bf16=gpu, gradient_checkpointing=False,
        use_cpu=not gpu, logging_steps=1, seed=0,
    )
    trainer = PPOTrainer(
        args=args, processing_class=tok,
        model=AutoModelForCausalLM.from_pretrained(work / "policy"),
        ref_model=AutoModelForCausalLM.from_pretrained(work / "policy"),
        reward_model=AutoModelForSequenceClassification.from_pretrained(work / "reward_model", num_labels=1),
        value_model=AutoModelForSequenceClassification.from_pretrained(work / "reward_model", num_labels=1),
        train_dataset=Dataset.from_dict({"input_ids": ids}),
    )
    _, wall = _timed(trainer.train)
    return _episode_rate(s, wall)


def run_trl116(work: Path, s: dict, algo: str) -> dict:
    import torch

    from policy.device import place
    from policy.models import load_tokenizer
    from policy.trl_baselines import TRLBaselineConfig, build_trl_trainer
    from reward_model.scoring import RewardScorer

    dev, gpu = _device(), torch.cuda.is_available()
    tok = load_tokenizer(work / "policy")
    scorer = RewardScorer.from_pretrained(work / "reward_model", batch_size=s["batch"], device=dev,
                                          dtype=torch.bfloat16 if gpu else torch.float32)
    cfg = TRLBaselineConfig(
        algo=algo, total_episodes=s["total_episodes"], per_device_train_batch_size=s["micro"],
        gradient_accumulation_steps=s["batch"] // s["micro"], num_generations=4,
        max_completion_length=s["response_length"], max_prompt_length=s["max_prompt_length"], temperature=0.7,
        beta=0.05, learning_rate=3e-6, bf16=gpu, seed=0, save_steps=10_000,
    )
    prompts = json.loads((work / "prompts.json").read_text())
    trainer = build_trl_trainer(work / "policy", tok, prompts, scorer, cfg, Path(tempfile.mkdtemp(prefix=algo, dir=work)),
                                place=lambda m, role: place(m, dev))
    _, wall = _timed(trainer.train)
    return _episode_rate(s, wall)


def run_generate(work: Path, s: dict) -> dict:
    import torch

    from policy.device import place
    from policy.models import load_causal_lm, load_tokenizer
    from policy.sampling import generate, left_pad_prompts

    dev, gpu = _device(), torch.cuda.is_available()
    tok = load_tokenizer(work / "policy")
    model = place(load_causal_lm(work / "policy"), dev, torch.bfloat16 if gpu else torch.float32).eval()
    prompts = json.loads((work / "prompts.json").read_text())[: s["gen_batch"]]
    ids, mask = left_pad_prompts(tok, prompts, s["max_prompt_length"])
    ids, mask = ids.to(dev), mask.to(dev)
    R = s["response_length"]

    def ours() -> None:
        generate(model, ids, mask, R, 0.7, tok.eos_token_id, tok.pad_token_id)

    def hf() -> None:
        model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=0.7, top_k=0, top_p=1.0,
                       max_new_tokens=R, min_new_tokens=R, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)

    out = {}
    with torch.no_grad():
        for name, fn in (("ours", ours), ("hf", hf)):
            fn()  # warm-up (kernels, allocator)
            t = statistics.median(_timed(fn)[1] for _ in range(s["gen_repeats"]))
            out[name] = {"seconds": t, "tokens_per_s": ids.shape[0] * R / t}
    out["batch"], out["prompt_width"], out["peak_gb"] = ids.shape[0], ids.shape[1], _peak_gb()
    out["prompt_tokens"] = int(mask.sum())
    return out


WORKERS = {"ours-ppo": run_ours_ppo, "trl112-ppo": run_trl112_ppo, "rloo": lambda w, s: run_trl116(w, s, "rloo"),
           "grpo": lambda w, s: run_trl116(w, s, "grpo"), "generate": run_generate}


# ----------------------------------------------------------------------------------------------------------
# orchestration
# ----------------------------------------------------------------------------------------------------------
def ppo_flops_per_episode(N: int, T: float, epochs: int) -> float:
    return N * T * (2 + 2 + 2 + 2 + 2 + 12 * epochs)


def critic_free_flops_per_episode(N: int, T: float) -> float:
    return N * T * (2 + 2 + 2 + 6)


def trl112_python(venv: Path) -> tuple[Path | None, str]:
    """TRL 1.12's venv (bench/ppo.py makes it), or None and why not."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from ppo import ensure_trl112_venv  # bench/ppo.py: one helper, written once

        return ensure_trl112_venv(venv), ""
    except Exception as err:  # noqa: BLE001 - offline machines: the row is skipped with the reason
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny model and few episodes (a CPU check of the script)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H200: 989)")
    ap.add_argument("--only", nargs="*", choices=list(WORKERS), help="run only these rows")
    ap.add_argument("--venv", type=Path, default=ROOT / "bench" / ".venv-trl112", help="TRL 1.12 venv")
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    ap.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    s = sizes(args.quick)
    if args.worker:
        import torch

        torch.manual_seed(0)
        args.result.write_text(json.dumps(WORKERS[args.worker](args.work, s)))
        return 0

    import torch

    env = os.environ | {"WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    gpu = torch.cuda.is_available()
    rows = args.only or list(WORKERS)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-throughput-") as tmp:
        work = Path(tmp)
        info = build_artifacts(work, s)
        for kind in rows:
            python, why = (trl112_python(args.venv) if kind == "trl112-ppo" else (Path(sys.executable), ""))
            if python is None:
                results[kind] = {"skipped": f"no TRL 1.12 venv ({why})"}
                continue
            out = work / f"{kind}.json"
            cmd = [str(python), str(Path(__file__).resolve()), "--worker", kind, "--work", str(work), "--result", str(out)]
            proc = subprocess.run(cmd + (["--quick"] if args.quick else []), env=env, cwd=ROOT, capture_output=True,
                                  text=True)
            if proc.returncode:
                results[kind] = {"skipped": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
            else:
                results[kind] = json.loads(out.read_text())
            print(f"[{kind}] {json.dumps(results[kind])[:300]}", flush=True)

    N, Q, R = info["N"], info["prompt_tokens_mean"], s["response_length"]
    T = Q + R
    peak = args.peak_tflops * 1e12
    device = torch.cuda.get_device_name(0) if gpu else "CPU"
    print(f"\n{device}; GPT-NeoX {s['n_layer']} x {s['n_embd']}, {info['params'] / 1e6:.1f}M parameters (N = {N / 1e6:.1f}M "
          f"outside the input embedding), vocab {info['vocab']}; {'bf16' if gpu else 'fp32'}; batch {s['batch']} "
          f"(micro {s['micro']}), {s['ppo_epochs']} PPO epochs, prompts {Q:.0f} tokens on average (max "
          f"{s['max_prompt_length']}), {R} new tokens, {s['total_episodes']} episodes")
    print(f"ceiling: {args.peak_tflops:.0f} TFLOP/s dense bf16 (--peak-tflops); PPO {ppo_flops_per_episode(N, T, s['ppo_epochs']) / 1e12:.3g} "
          f"TFLOP/episode, RLOO/GRPO {critic_free_flops_per_episode(N, T) / 1e12:.3g} TFLOP/episode, generation "
          f"{2 * N / 1e9:.3g} GFLOP/token")
    print(f"\n{'row':<16}{'episodes/s':>12}{'wall s':>9}{'peak GB':>9}{'TFLOP/s':>10}{'of peak':>9}  vs ours PPO")
    ours = results.get("ours-ppo", {})
    for kind, label, flops in (("ours-ppo", "ours PPO", ppo_flops_per_episode(N, T, s["ppo_epochs"])),
                               ("trl112-ppo", "TRL 1.12 PPO", ppo_flops_per_episode(N, T, s["ppo_epochs"])),
                               ("rloo", "TRL 1.16 RLOO", critic_free_flops_per_episode(N, T)),
                               ("grpo", "TRL 1.16 GRPO", critic_free_flops_per_episode(N, T))):
        r = results.get(kind)
        if r is None:
            continue
        if "skipped" in r:
            print(f"{label:<16}  skipped: {r['skipped']}")
            continue
        achieved = r["episodes_per_s"] * flops
        ratio = f"ours x{ours['episodes_per_s'] / r['episodes_per_s']:.2f}" if "episodes_per_s" in ours and kind != "ours-ppo" else ""
        peak_gb = f"{r['peak_gb']:.2f}" if r.get("peak_gb") is not None else "-"
        print(f"{label:<16}{r['episodes_per_s']:>12.2f}{r['wall_s']:>9.1f}{peak_gb:>9}{achieved / 1e12:>10.3g} "
              f"{100 * achieved / peak:>8.3g}%  {ratio}")
    g = results.get("generate", {})
    if "ours" in g:
        prefill_share = g["prompt_tokens"] / (g["batch"] * R)  # prompt tokens per new token
        print(f"\ngeneration, batch {g['batch']}, prompt width {g['prompt_width']}, {R} new tokens each")
        print(f"{'sampler':<16}{'new tokens/s':>14}{'TFLOP/s':>10}{'of peak':>9}")
        for name, label in (("ours", "ours"), ("hf", "model.generate")):
            tps = g[name]["tokens_per_s"]
            achieved = tps * (1 + prefill_share) * 2 * N
            print(f"{label:<16}{tps:>14,.0f}{achieved / 1e12:>10.3g} {100 * achieved / peak:>8.3g}%")
        print(f"ours / model.generate: x{g['ours']['tokens_per_s'] / g['hf']['tokens_per_s']:.2f}")
    elif "skipped" in g:
        print(f"\ngeneration skipped: {g['skipped']}")
    if args.out:
        args.out.write_text(json.dumps({"sizes": s, "model": info, "peak_tflops": args.peak_tflops, "device": device,
                                        "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
