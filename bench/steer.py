"""GCG speed and success: ours (policy.goals.gcg) vs nanoGCG 0.3.0, same model, targets and settings.

    .venv/bin/python bench/steer.py --run runs/demo [--config configs/demo.yaml] [--cases 20]   # the demo's policy
    .venv/bin/python bench/steer.py [--quick] [--model runs/demo/sft/model]                     # toy prompts

With --run (a finished demo run): the frozen SFT policy the steer stage steers (runs/demo/sft/model, trained
by the pipeline, not a random init), and its cases drawn as the steer stage draws them: the held-out prompts
of `pipelines.steer_suite.target_steering_prompts`, case i on prompt i mod steer.target.n_posts, its target drawn
by random.Random(steer.seed + i) from the policy's top-`top_n` next tokens (argmax and banned tokens excluded),
k = steer.target.k trigger tokens. Without --run: toy prompts and a target from ranks 1..74 of a random-init
4x256 GPT-2 (or --model).

nanoGCG pins transformers<=4.47.1, so it runs in its own virtual environment (bench/.venv/nanogcg, made on
first use: torch==2.13.0 from the local wheel, transformers==4.47.1, nanogcg==0.3.0) in a subprocess that
re-enters this file with --nanogcg-worker. The model is saved once with safetensors; both sides load it, on
the GPU when there is one (--bf16: in bf16 on both sides), else on the CPU with one thread.

Two measurements per case, setup included in the wall time of each call:
  speed    early stop off, a fixed number of steps: seconds per step (ratio ours / nanoGCG; goal <= 0.8)
  success  early stop on, up to --max-steps: success (target is the argmax) and steps to success
Matched settings: trigger " x" * k at the end of the prompt (nanoGCG's default slot), search_width, topk,
n_replace=1, buffer_size=0, prefix cache on, retokenization filter on, non-ASCII tokens banned, no restarts.
--stage-settings adds a third column: ours with the steer stage's own GCG settings (its init and restarts).

What differs between the two implementations (nanoGCG 0.3.0 source, policy/goals/gcg.py):
  libraries      nanoGCG under transformers 4.47.1 (its pin), ours under the project's transformers 5.24; the
                 same torch 2.13 wheel. Attention kernels and the KV-cache classes differ between the two.
  duplicates     ours drops duplicate candidates (torch.unique) and the current trigger before the forward
                 pass; nanoGCG evaluates all `search_width` samples, duplicates included (with n_replace=1 and
                 a small vocabulary many repeat), so the same step costs it more forwards.
  cache clearing nanoGCG runs gc.collect() and torch.cuda.empty_cache() after every candidate batch (and in its
                 batch-size finder); on a GPU that syncs and returns memory each step, on a CPU it costs the
                 gc.collect() only. Ours keeps the allocator's cache.
  determinism    nanoGCG with a seed turns on torch.use_deterministic_algorithms(True, warn_only=True).
  early stop     nanoGCG stops when any candidate of the step makes the target the argmax, then reports the
                 lowest-loss string; ours stops when the kept (lowest-loss) trigger makes it the argmax. Both
                 are checked here the same way afterwards: argmax after prompt + trigger ids.
  target         nanoGCG takes the target as text and tokenizes it; ours takes the token id. A target whose
                 text does not encode back to its id is scored on the re-encoded id for nanoGCG.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages, not an installed copy
VENV = Path(__file__).resolve().parent / ".venv" / "nanogcg"
PINS = ["torch==2.13.0", "transformers==4.47.1", "nanogcg==0.3.0"]


# ----------------------------------------------------------------------------------------- nanoGCG side
def nanogcg_worker(model_dir: str, cases_file: str, out_file: str) -> None:
    """Runs inside the nanoGCG venv: only torch, transformers 4.47 and nanogcg are importable here."""
    import logging

    import nanogcg
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.set_num_threads(1)
    logging.getLogger("nanogcg").setLevel(logging.ERROR)
    spec = json.loads(Path(cases_file).read_text())
    dtype = torch.bfloat16 if spec.get("bf16") else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).to(device).eval()
    # transformers 5 saves its tokenizer class as "TokenizersBackend", unknown to 4.47: load tokenizer.json
    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(model_dir) / "tokenizer.json"), **spec["special_tokens"])
    tok.chat_template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    s = spec["settings"]
    base = dict(
        optim_str_init=s["init"] * s["k"], search_width=s["search_width"], topk=s["topk"], n_replace=1,
        buffer_size=0, use_prefix_cache=True, filter_ids=True, allow_non_ascii=False, verbosity="ERROR",
    )
    out = []
    for i, case in enumerate(spec["cases"]):
        row = {}
        for mode, steps, early in (("speed", s["speed_steps"], False), ("success", s["max_steps"], True)):
            cfg = nanogcg.GCGConfig(num_steps=steps, early_stop=early, seed=s["seed"] + i, **base)
            t0 = time.perf_counter()
            res = nanogcg.run(model, tok, case["prompt"], case["target"], cfg)
            wall = time.perf_counter() - t0
            ids = tok(case["prompt"] + res.best_string, add_special_tokens=False, return_tensors="pt")["input_ids"]
            trig = tok(res.best_string, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
            prompt_ids = tok(case["prompt"], add_special_tokens=False, return_tensors="pt")["input_ids"][0]
            ids = torch.cat([prompt_ids, trig])[None].to(device)  # token-level insertion, as both searches score it
            with torch.no_grad():
                top = int(model(input_ids=ids).logits[0, -1].argmax())
            tgt = tok(case["target"], add_special_tokens=False)["input_ids"][0]
            n = len(res.losses)
            row[mode] = {"steps": n, "seconds": wall, "seconds_per_step": wall / n, "success": top == tgt,
                         "best_loss": res.best_loss}
        out.append(row)
    Path(out_file).write_text(json.dumps(out))


def ensure_venv() -> Path:
    """The nanoGCG venv's python, created on first use (a few minutes, local torch wheel)."""
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {VENV} with {' '.join(PINS)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PINS], check=True)
    return py


# ----------------------------------------------------------------------------------------- our side
def demo_cases(run: Path, config: str, n: int, model, tok) -> tuple[list[dict], dict]:
    """(cases, steer target settings) drawn as the steer stage draws them (module docstring)."""
    import random

    import datasets
    import torch

    from pipelines import configio
    from pipelines.config import ExperimentConfig
    from policy.goals.common import encode, not_allowed_token_ids
    from pipelines.steer_suite import target_steering_prompts

    steer = configio.load(ExperimentConfig, config).steer
    prompts = target_steering_prompts(datasets.load_from_disk(str(run / "build-data" / "sft")), steer)
    banned = set(not_allowed_token_ids(tok).tolist())
    cases = []
    for i in range(n):
        prompt = prompts[i % len(prompts)]
        with torch.no_grad():
            top = model(input_ids=encode(tok, prompt).to(model.device)[None]).logits[0, -1].topk(steer.target.top_n)
        top = top.indices.tolist()
        t = random.Random(steer.seed + i).choice([t for t in top[1:] if t not in banned])
        cases.append({"prompt": prompt, "target": tok.decode([t]), "target_id": t, "rank": top.index(t)})
    return cases, {"k": steer.target.k, "stage_gcg": steer.target.gcg.model_copy(update={"n_tokens": steer.target.k})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 cases, fewer steps")
    ap.add_argument("--run", default=None, help="a finished run (sft, build-data): its SFT policy and the steer "
                    "stage's cases")
    ap.add_argument("--config", default="configs/demo.yaml", help="the config of --run (its steer section)")
    ap.add_argument("--model", default=None, help="a saved policy dir (default: a tiny 4x256 GPT-2)")
    ap.add_argument("--cases", type=int, default=None, help="cases (default 20 with --run, else 6)")
    ap.add_argument("--k", type=int, default=10, help="trigger tokens (with --run: the steer stage's)")
    ap.add_argument("--search-width", type=int, default=128)
    ap.add_argument("--topk", type=int, default=64)
    ap.add_argument("--speed-steps", type=int, default=15)
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--bf16", action="store_true", help="both sides in bf16 (GPU)")
    ap.add_argument("--stage-settings", action="store_true", help="also ours with the steer stage's GCG settings "
                    "(needs --run; success mode only)")
    ap.add_argument("--workdir", default="/tmp/bench_steer")
    ap.add_argument("--nanogcg-worker", nargs=3, metavar=("MODEL", "CASES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nanogcg_worker:
        return nanogcg_worker(*args.nanogcg_worker)

    import torch

    from policy.device import place
    from policy.goals import gcg
    from policy.goals.common import encode, not_allowed_token_ids
    from policy.goals.toy import toy_model, toy_prompts
    from policy.models import load_causal_lm, load_tokenizer

    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if args.bf16 and device == "cuda" else torch.float32
    if args.quick:
        args.speed_steps, args.max_steps = 8, 30
    n_cases = args.cases or (2 if args.quick else 20 if args.run else 6)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    run = Path(args.run) if args.run else None
    if run is not None:
        model, tok = load_causal_lm(run / "sft" / "model").eval(), load_tokenizer(run / "sft" / "model")
    elif args.model:
        model, tok = load_causal_lm(args.model).eval(), load_tokenizer(args.model)
    else:
        model, tok = toy_model(seed=0, n_layer=4, n_embd=256, vocab_size=4096)
    model_dir = work / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    tok.save_pretrained(model_dir)
    place(model.eval(), device, dtype)

    # 1. cases: the steer stage's (--run), or a prompt and a target from ranks 1..74 of the model's own ranking
    stage_gcg = None
    if run is not None:
        cases, stage = demo_cases(run, args.config, n_cases, model, tok)
        args.k, stage_gcg = stage["k"], stage["stage_gcg"]
    else:
        banned = set(not_allowed_token_ids(tok).tolist())
        g = torch.Generator().manual_seed(0)
        cases = []
        for p in toy_prompts(n_cases, seed=11):
            with torch.no_grad():
                top = model(input_ids=encode(tok, p).to(device)[None]).logits[0, -1].topk(75).indices.tolist()
            pool = [t for t in top[1:] if t not in banned]
            t = pool[int(torch.randint(len(pool), (1,), generator=g))]
            cases.append({"prompt": p, "target": tok.decode([t]), "target_id": t, "rank": top.index(t)})
    settings = {"k": args.k, "search_width": args.search_width, "topk": args.topk, "init": " x",
                "speed_steps": args.speed_steps, "max_steps": args.max_steps, "seed": 0}
    special = {"eos_token": tok.eos_token, "pad_token": tok.pad_token, "bos_token": tok.bos_token}
    (work / "cases.json").write_text(json.dumps({"cases": cases, "settings": settings, "special_tokens": special,
                                                 "bf16": dtype == torch.bfloat16}))

    # 2. ours, matched settings (and, with --stage-settings, the steer stage's own)
    def timed(cfg: gcg.GCGConfig, c: dict) -> dict:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = gcg.run(model, tok, c["prompt"], c["target_id"], cfg)
        wall = time.perf_counter() - t0
        n = max(res.steps, 1)
        return {"steps": res.steps, "seconds": wall, "seconds_per_step": wall / n, "success": res.success,
                "best_loss": res.best_loss}

    ours, staged = [], []
    for i, c in enumerate(cases):
        row = {}
        for mode, steps, early in (("speed", args.speed_steps, False), ("success", args.max_steps, True)):
            cfg = gcg.GCGConfig(n_tokens=args.k, position="suffix", num_steps=steps, search_width=args.search_width,
                                topk=args.topk, n_replace=1, early_stop=early, init_token=" x", seed=i)
            row[mode] = timed(cfg, c)
        ours.append(row)
        if args.stage_settings and stage_gcg is not None:
            staged.append({"success": timed(stage_gcg.model_copy(update={"seed": i, "early_stop": True}), c)})

    # 3. nanoGCG in its own venv
    py = ensure_venv()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "TQDM_DISABLE": "1"}
    subprocess.run([str(py), __file__, "--nanogcg-worker", str(model_dir), str(work / "cases.json"),
                    str(work / "nanogcg.json")], check=True, env=env)
    theirs = json.loads((work / "nanogcg.json").read_text())

    # 4. side by side
    def agg(rows: list[dict]) -> dict:
        sp = statistics.mean(r["speed"]["seconds_per_step"] for r in rows) if "speed" in rows[0] else float("nan")
        wins = [r["success"] for r in rows if r["success"]["success"]]
        return {"s_per_step": sp, "success": len(wins) / len(rows),
                "steps_to_success": statistics.mean(w["steps"] for w in wins) if wins else float("nan"),
                "s_to_success": statistics.mean(w["seconds"] for w in wins) if wins else float("nan")}

    a, b = agg(ours), agg(theirs)
    shape = f"{model.config.num_hidden_layers}x{model.config.hidden_size} {model.config.model_type}"
    where = f"{device} {str(dtype).removeprefix('torch.')}" + (", 1 thread" if device == "cpu" else "")
    source = f"{run}/sft/model, the steer stage's cases ({args.config})" if run else (args.model or "toy model")
    print(f"\n{source}: {shape}, vocab {len(tok)}, {len(cases)} cases, k={args.k}, search_width={args.search_width}, "
          f"topk={args.topk}, {where}")
    print(f"{'case':>4} {'rank':>4} | {'ours s/step':>11} {'nanoGCG s/step':>14} | {'ours steps':>10} "
          f"{'nanoGCG steps':>13} | ours ok  nanoGCG ok")
    for i, (c, o, t) in enumerate(zip(cases, ours, theirs)):
        print(f"{i:>4} {c['rank']:>4} | {o['speed']['seconds_per_step']:>11.4f} {t['speed']['seconds_per_step']:>14.4f} | "
              f"{o['success']['steps']:>10} {t['success']['steps']:>13} | {str(o['success']['success']):>7} "
              f"{str(t['success']['success']):>10}")
    extra = agg(staged) if staged else None
    print(f"{'metric':<22}{'ours':>10}{'nanoGCG':>10}{'ratio':>8}" + ("   ours, stage settings" if extra else ""))
    for key in ("s_per_step", "success", "steps_to_success", "s_to_success"):
        r = a[key] / b[key] if b[key] else float("nan")
        tail = f"   {extra[key]:>10.4f}" if extra and key != "s_per_step" else ""
        print(f"{key:<22}{a[key]:>10.4f}{b[key]:>10.4f}{r:>8.2f}{tail}")
    (work / "result.json").write_text(json.dumps({"ours": a, "nanogcg": b, "ours_stage_settings": extra,
                                                  "cases": len(cases), "settings": settings, "source": source}))


if __name__ == "__main__":
    main()
