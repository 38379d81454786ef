"""Episodes/s and peak memory: our PPO (policy/ppo.py) vs TRL 1.12's `trl.experimental.ppo.PPOTrainer`.

    .venv/bin/python bench/ppo.py --quick

Both run the same tiny GPT-2 policy, the same tiny GPT-2 reward model (sharing the policy's tokenizer, which
TRL 1.12's PPOTrainer requires), value model initialized from the reward model, and the same batch sizes,
response length, PPO epochs and temperature, each in its own subprocess (so peak memory is per run).
TRL 1.12 lives in `bench/.venv-trl112`, created on first use: a venv whose only own package is
trl==1.12.0 (installed with --no-deps) and which reads torch 2.13 / transformers / accelerate / datasets
from the project venv through a .pth file (TRL 1.12 accepts transformers>=4.56.2).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the cat sat on a mat while dogs ran in parks and birds flew over trees near rivers today".split()


def sizes(quick: bool) -> dict:
    if quick:
        return dict(n_layer=2, n_embd=64, n_head=2, total_episodes=128, batch=32, micro=8, response_length=16,
                    prompt_words=24, num_ppo_epochs=2, num_mini_batches=2)
    return dict(n_layer=4, n_embd=256, n_head=4, total_episodes=512, batch=64, micro=16, response_length=53,
                prompt_words=100, num_ppo_epochs=4, num_mini_batches=2)


# ----------------------------------------------------------------------------------------------------------
# setup (project venv): tokenizer, policy, reward model, prompts
# ----------------------------------------------------------------------------------------------------------
def build_artifacts(work: Path, s: dict) -> None:
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer

    rnd = random.Random(0)
    tok = train_tokenizer([" ".join(rnd.choice(WORDS) for _ in range(40)) for _ in range(500)], vocab_size=512)
    policy = build_tiny_causal_lm(tok, ModelSpec(n_layer=s["n_layer"], n_embd=s["n_embd"], n_head=s["n_head"], n_positions=512))
    policy.save_pretrained(work / "policy")
    tok.save_pretrained(work / "policy")
    torch.manual_seed(1)
    rm_config = GPT2Config(**(policy.config.to_dict() | {"num_labels": 1}))
    GPT2ForSequenceClassification(rm_config).save_pretrained(work / "reward_model")
    tok.save_pretrained(work / "reward_model")
    prompts = [" ".join(rnd.choice(WORDS) for _ in range(s["prompt_words"])) + "\n\nTL;DR:" for _ in range(256)]
    (work / "prompts.json").write_text(json.dumps(prompts))


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (whole process)


# ----------------------------------------------------------------------------------------------------------
# workers
# ----------------------------------------------------------------------------------------------------------
def run_ours(work: Path, s: dict, reuse_logprobs: bool) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from policy.models import load_tokenizer
    from policy.ppo import train_ppo
    from policy.ppo_config import PPOConfig
    from policy.value_model import build_value_model
    from policy.sampling import concat_query_response

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = load_tokenizer(work / "policy")
    policy = AutoModelForCausalLM.from_pretrained(work / "policy")
    ref = AutoModelForCausalLM.from_pretrained(work / "policy")
    value = build_value_model(policy, work / "reward_model")
    rm = AutoModelForSequenceClassification.from_pretrained(work / "reward_model").to(device).eval()
    prompts = json.loads((work / "prompts.json").read_text())

    @torch.no_grad()
    def reward_fn(batch_prompts: list[str], responses: list[str]) -> torch.Tensor:
        # Same reading as TRL's get_reward: score at the last real token of prompt + response (+ EOS).
        from policy.sampling import left_pad_prompts

        q, qm = left_pad_prompts(tok, batch_prompts)
        r = [tok(t + tok.eos_token, add_special_tokens=False)["input_ids"] for t in responses]
        width = max(map(len, r))
        r_ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in r])
        r_len = torch.tensor([len(x) for x in r])
        ids, mask, pos = concat_query_response(q, qm, r_ids)
        hidden = rm.transformer(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device)).last_hidden_state
        logits = rm.score(hidden).squeeze(-1)
        return logits[torch.arange(len(r)), q.size(1) + r_len.to(device) - 1]

    cfg = PPOConfig(
        total_episodes=s["total_episodes"], per_device_train_batch_size=s["micro"],
        gradient_accumulation_steps=s["batch"] // s["micro"] // s["num_mini_batches"], num_mini_batches=s["num_mini_batches"],
        num_ppo_epochs=s["num_ppo_epochs"], local_rollout_forward_batch_size=s["batch"], response_length=s["response_length"],
        temperature=0.7, kl_coef=0.05, missing_eos_penalty=-1.0, learning_rate=3e-6, save_every=10_000, num_samples=0,
        reuse_sampling_logprobs=reuse_logprobs,
    )
    out = Path(tempfile.mkdtemp(prefix="ours-", dir=work))
    start = time.perf_counter()
    result = train_ppo(policy, ref, value, tok, prompts, reward_fn, cfg, out)
    wall = time.perf_counter() - start
    return {"episodes": s["total_episodes"], "wall_s": wall, "episodes_per_s": s["total_episodes"] / wall,
            "peak_mem_mb": peak_memory_mb(), "final_score": result.history[-1]["objective/scores"]}


def run_trl112(work: Path, s: dict) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    assert trl.__version__ == "1.12.0", trl.__version__
    tok = AutoTokenizer.from_pretrained(work / "policy", padding_side="left")
    prompts = json.loads((work / "prompts.json").read_text())
    dataset = Dataset.from_dict({"input_ids": [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]})
    on_gpu = torch.cuda.is_available()
    args = PPOConfig(
        output_dir=str(work / "trl112-out"), total_episodes=s["total_episodes"], per_device_train_batch_size=s["micro"],
        gradient_accumulation_steps=s["batch"] // s["micro"] // s["num_mini_batches"], num_mini_batches=s["num_mini_batches"],
        num_ppo_epochs=s["num_ppo_epochs"], local_rollout_forward_batch_size=s["batch"], response_length=s["response_length"],
        # TRL 1.12 SUBTRACTS its missing_eos_penalty from the score (ours replaces the score): a positive 1.0.
        temperature=0.7, kl_coef=0.05, missing_eos_penalty=1.0, learning_rate=3e-6, stop_token="eos",
        num_sample_generations=0, save_strategy="no", report_to="none", bf16=False, gradient_checkpointing=False,
        use_cpu=not on_gpu, logging_steps=1, seed=0,
    )
    trainer = PPOTrainer(
        args=args, processing_class=tok,
        model=AutoModelForCausalLM.from_pretrained(work / "policy"),
        ref_model=AutoModelForCausalLM.from_pretrained(work / "policy"),
        reward_model=AutoModelForSequenceClassification.from_pretrained(work / "reward_model", num_labels=1),
        value_model=AutoModelForSequenceClassification.from_pretrained(work / "reward_model", num_labels=1),
        train_dataset=dataset,
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    scores = [h["objective/scores"] for h in trainer.state.log_history if "objective/scores" in h]
    return {"episodes": s["total_episodes"], "wall_s": wall, "episodes_per_s": s["total_episodes"] / wall,
            "peak_mem_mb": peak_memory_mb(), "final_score": scores[-1] if scores else float("nan")}


# ----------------------------------------------------------------------------------------------------------
# orchestration
# ----------------------------------------------------------------------------------------------------------
def ensure_trl112_venv(venv: Path) -> Path:
    """A venv holding only trl==1.12.0, reading everything else from the project venv (see module docstring)."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import trl; assert trl.__version__ == '1.12.0'"],
                                          capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    main_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    # `import site; site.addsitedir(...)` also processes the project venv's own .pth files; appended, so
    # trl 1.12 in this venv wins over trl 1.16 there.
    (Path(site) / "project_venv.pth").write_text(f"import site; site.addsitedir({main_site!r})\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, "trl==1.12.0"], check=True)
    return python


def worker_main(kind: str, work: Path, quick: bool, out: Path) -> None:
    import torch

    torch.manual_seed(0)
    if not torch.cuda.is_available():
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    s = sizes(quick)
    result = {"ours": lambda: run_ours(work, s, False), "ours-reuse": lambda: run_ours(work, s, True),
              "trl112": lambda: run_trl112(work, s)}[kind]()
    out.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model and few episodes")
    parser.add_argument("--venv", type=Path, default=ROOT / "bench" / ".venv-trl112", help="TRL 1.12 venv")
    parser.add_argument("--worker", choices=["ours", "ours-reuse", "trl112"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args.worker, args.work, args.quick, args.out)

    env = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "WANDB_MODE": "offline",
                        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    peer_python = ensure_trl112_venv(args.venv)
    s = sizes(args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        work = Path(tmp)
        build_artifacts(work, s)
        results = {}
        for kind, python in (("trl112", peer_python), ("ours", Path(sys.executable)), ("ours-reuse", Path(sys.executable))):
            out = work / f"{kind}.json"
            cmd = [str(python), str(Path(__file__).resolve()), "--worker", kind, "--work", str(work), "--out", str(out)]
            subprocess.run(cmd + (["--quick"] if args.quick else []), check=True, env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            results[kind] = json.loads(out.read_text())
    import torch

    print(f"PPO bench ({'quick' if args.quick else 'full'}; {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}): {s}")
    print(f"{'run':<12}{'episodes/s':>12}{'wall s':>10}{'peak MiB':>11}{'final score':>13}")
    for kind, r in results.items():
        print(f"{kind:<12}{r['episodes_per_s']:>12.2f}{r['wall_s']:>10.1f}{r['peak_mem_mb']:>11.0f}{r['final_score']:>13.3f}")
    base = results["trl112"]
    for kind in ("ours", "ours-reuse"):
        r = results[kind]
        print(f"{kind} / trl112: speed x{r['episodes_per_s'] / base['episodes_per_s']:.2f}, "
              f"peak memory x{r['peak_mem_mb'] / base['peak_mem_mb']:.2f}")


if __name__ == "__main__":
    main()
