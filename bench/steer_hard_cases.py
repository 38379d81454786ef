"""The target-steering cases a steer run failed: would another search find them, or are they out of reach?

    .venv/bin/python bench/steer_hard_cases.py [--run runs/demo] [--config configs/demo.yaml] [--n 20] [--quick]

Reads the run's `steer/steer_target_steering_cases.json` (prompt index and target of every case), takes the
first `--n` failures and runs, side by side on the same (post, target) cases and frozen SFT policy:

  gcg        the stage's GCG settings again with other seeds (is failure just bad luck?)
  gcg-wide   4x the candidates per step and 4x the top-k per position (is the candidate set too narrow?)
  restarts   the same step budget split into 3 runs, the last two from random word tokens (a bad basin?)
  soft       continuous soft prompt of the same length (not real tokens: an upper bound on what the
             input slot can do) and its projection to the nearest tokens (PEZ)
  corpus     warm start: the 10-token window of the SFT training texts (first --corpus-texts) where the policy
             gives the target the highest probability, best of 64 by exact loss; then GCG from it
  periodic   warm start: [target, x] repeated, the best x of the whole allowed vocabulary (does the policy
             copy what followed x before?); then GCG from it
  final state  any residual state before the final norm optimized freely (no input at all): can the output
             layer make the target the argmax? A target that fails here is out of reach for every input

Prints success count and seconds per case for each. When every discrete variant stays low while the soft
prompt succeeds, the limit is the discrete token space of this model, not the search budget.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("gcg", "wide", "restarts", "soft", "corpus", "periodic", "final")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="Run directory with completed sft, build-data and steer stages.")
    ap.add_argument("--config", default="configs/demo.yaml", help="The config that run used.")
    ap.add_argument("--n", type=int, default=20, help="Failed cases to retry.")
    ap.add_argument("--soft-steps", type=int, default=300, help="Adam steps of the soft prompt.")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                    help=f"Which variants to run (default all): {' '.join(VARIANTS)}.")
    ap.add_argument("--corpus-texts", type=int, default=600, help="SFT training texts the corpus variant searches.")
    ap.add_argument("--quick", action="store_true", help="5 cases, 100 soft steps (make bench).")
    args = ap.parse_args()
    if args.quick:
        args.n, args.soft_steps = min(args.n, 5), 100

    import datasets
    import torch

    from pipelines import configio
    from pipelines.config import ExperimentConfig
    from policy.goals import gcg, soft_prompt
    from policy.goals.common import frozen, not_allowed_token_ids, prepare_case, word_token_ids
    from pipelines.steer_suite import target_steering_prompts
    from policy.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    run = Path(args.run)
    cases_file = run / "steer" / "steer_target_steering_cases.json"
    if not cases_file.is_file():
        print(f"skipped: {cases_file} not found; this bench reads a finished steer stage (make demo first)")
        return
    table = json.loads(cases_file.read_text())
    cases = [dict(zip(table["columns"], row)) for row in table["rows"]]
    cfg = configio.load(ExperimentConfig, args.config).steer
    rows = datasets.load_from_disk(str(run / "build-data" / "sft"))
    prompts = target_steering_prompts(rows, cfg)
    tok = load_tokenizer(str(run / "sft" / "model"))
    model = load_causal_lm(str(run / "sft" / "model"))
    failed = [c for c in cases if not c["success"]][: args.n]
    print(f"{run}: {len(cases)} cases, {sum(c['success'] for c in cases)} succeeded; retrying {len(failed)} failures")
    if not failed:
        return

    banned = set(not_allowed_token_ids(tok).tolist())
    words = word_token_ids(tok, banned)
    base = cfg.target.gcg.model_copy(update={"n_tokens": cfg.target.k})
    wide = base.model_copy(update={"search_width": 4 * base.search_width, "topk": 4 * base.topk})
    split = [base.num_steps - 2 * (base.num_steps // 3), base.num_steps // 3, base.num_steps // 3]

    def gcg_once(prompt: str, target: int, g: gcg.GCGConfig, i: int) -> bool:
        return gcg.run(model, tok, prompt, target, g.model_copy(update={"seed": 1000 + i})).success

    def restarts(prompt: str, target: int, i: int) -> bool:
        rng = random.Random(i)
        for a, steps in enumerate(split):
            update: dict = {"num_steps": steps, "seed": 2000 + 10 * i + a, "restarts": 0}  # its own restarts
            if a:
                update |= {"init_with_target": False, "init_token": tok.decode([rng.choice(words)])}
            if gcg.run(model, tok, prompt, target, base.model_copy(update=update)).success:
                return True
        return False

    soft_cfg = soft_prompt.SoftPromptConfig(n_tokens=cfg.target.k, position=base.position, mode="soft",
                                            steps=args.soft_steps, early_stop=False)
    soft_results: dict[int, soft_prompt.SoftPromptResult] = {}

    def soft(prompt: str, target: int, i: int) -> bool:
        soft_results[i] = soft_prompt.run(model, tok, prompt, target, soft_cfg.model_copy(update={"seed": i}))
        return soft_results[i].soft_success

    def warm_start(prompt: str, target: int, i: int, starts: torch.Tensor) -> bool:
        """Best of `starts` by exact loss; success if it already wins, else GCG from it."""
        starts = gcg.retokenization_filter(tok, starts)
        if starts.shape[0] == 0:
            return gcg_once(prompt, target, base, i)
        case = prepare_case(model, tok, prompt, target, base.position)
        with frozen(model):
            loss, wins = gcg.candidate_losses(model, [case], starts, batch_size=512)
        j = int(loss.argmin())
        warm_wins[0] += bool(wins[j] > 0)
        if wins[j] > 0:
            return True
        g = base.model_copy(update={"seed": 3000 + i})
        return gcg.run(model, tok, prompt, target, g, init_ids=starts[j].tolist()).success

    corpus_index: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (hidden, logsumexp, ids) per text

    def corpus(prompt: str, target: int, i: int) -> bool:
        k, head = base.n_tokens, model.get_output_embeddings()
        if not corpus_index:
            texts = [p + c for p, c in zip(rows["train"]["prompt"], rows["train"]["completion"])][: args.corpus_texts]
            with torch.no_grad(), frozen(model):
                for text in texts:
                    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids[:, :512]
                    h = model.base_model(input_ids=ids).last_hidden_state[0]
                    corpus_index.append((h, torch.logsumexp(head(h), -1), ids[0]))
        scored = []
        with torch.no_grad():
            for d, (h, lse, ids) in enumerate(corpus_index):
                logp = h @ head.weight[target] - lse  # log p(target) after each position
                for p in logp.topk(min(4, len(logp))).indices.tolist():
                    window = ids[p - k + 1 : p + 1]
                    if p + 1 >= k and not any(int(t) in banned for t in window):
                        scored.append((float(logp[p]), window))
        scored.sort(key=lambda s: -s[0])
        return warm_start(prompt, target, i, torch.stack([w for _, w in scored[:64]]))

    allowed = torch.tensor([t for t in range(len(tok)) if t not in banned])

    def periodic(prompt: str, target: int, i: int) -> bool:
        reps = (base.n_tokens + 1) // 2
        starts = torch.stack([torch.tensor([target, int(x)] * reps)[: base.n_tokens] for x in allowed])
        return warm_start(prompt, target, i, starts)

    warm_wins = [0]
    final_norm = getattr(model.base_model, "ln_f", None) or getattr(model.base_model, "norm", None)

    def final_state(prompt: str, target: int, i: int) -> bool:
        head = model.get_output_embeddings()
        gen = torch.Generator().manual_seed(i)
        with frozen(model):
            z = torch.randn(1, head.weight.shape[1], generator=gen) + 3 * head.weight[target]
            z.requires_grad_(True)
            opt = torch.optim.Adam([z], lr=0.1)
            for _ in range(400):
                logits = head(final_norm(z))[0]
                others = torch.cat([logits[:target], logits[target + 1 :]])
                loss = torch.logsumexp(others, 0) - logits[target]
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                return bool(head(final_norm(z))[0].argmax() == target)

    variants = {  # key -> (label, function)
        "gcg": ("gcg (other seeds)", lambda p, t, i: gcg_once(p, t, base, i)),
        "wide": ("gcg-wide (4x width, 4x topk)", lambda p, t, i: gcg_once(p, t, wide, i)),
        "restarts": (f"restarts {'+'.join(map(str, split))} steps", restarts),
        "soft": ("soft prompt (continuous)", soft),
        "corpus": ("corpus window + gcg", corpus),
        "periodic": ("periodic [t, x]*5 + gcg", periodic),
        "final": ("final state (no input)", final_state),
    }
    if final_norm is None:
        variants.pop("final")
    print(f"{'variant':34s} {'success':>9s} {'s/case':>8s}")
    for name, fn in (variants[k] for k in variants if k in args.variants):
        t0, wins, warm_wins[0] = time.perf_counter(), 0, 0
        for i, c in enumerate(failed):
            wins += fn(prompts[c["prompt_index"]], c["target_id"], i)
        dt = (time.perf_counter() - t0) / len(failed)
        warm = f"  (warm start alone: {warm_wins[0]})" if "+ gcg" in name else ""
        print(f"{name:34s} {wins:>4d}/{len(failed):<4d} {dt:8.2f}{warm}", flush=True)
    pez = sum(r.projected_success for r in soft_results.values())
    if soft_results:
        print(f"{'soft prompt projected to tokens':34s} {pez:>4d}/{len(failed):<4d} {'':8s}")


if __name__ == "__main__":
    main()
