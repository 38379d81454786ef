"""`python -m pipelines steer`: goal-conditioning and input-only steering of the SFT policy, and the side-by-side table.

    python -m pipelines steer --config configs/demo.yaml [steer.target.n_cases=20 ...]

Reads  build-data/sft (posts), sft/model (the frozen policy), train-reward/model (the reward), and, when that
       stage completed, eval-policy/policy_table.json (SFT, best-of-n, PPO, RLOO/GRPO rows).
Writes steer/side_by_side.{json,md} (those rows + goal token, reward triggers), sensitivity.png,
       goal_policy/ (the goal-token copy of the policy), one JSON per table, metrics.json (`steer/...`).
What each part does and how it is sized: `pipelines.steer_suite`.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from data.sim.gold import gold_score
from pipelines.rundir import StageDir
from pipelines.stages import Context, register
from pipelines.stages.eval_policy import held_out
from pipelines.stages.train import load_scorer
from pipelines.steer_suite import run_steering_suite
from policy.evaluate import ROW_KEYS, format_rows, reference_row
from policy.models import load_causal_lm, load_tokenizer


def earlier_policy_rows(run_root: Path) -> list[dict]:
    """Rows of eval-policy's table when that stage completed, else none (the table then starts at SFT)."""
    sd = StageDir(run_root, "eval-policy")
    path = sd.path / "policy_table.json"
    if not sd.is_complete() or not path.is_file():
        return []
    table = json.loads(path.read_text())
    rows = table.get("rows", []) if isinstance(table, dict) else table
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "method" in r for r in rows):
        raise ValueError(f"{path}: expected a list of rows with a 'method' key (or {{'rows': [...]}})")
    return rows


def _log_table(ctx: Context, key: str, rows: list[dict]) -> None:
    if rows:
        columns = list(rows[0].keys())
        ctx.tracker.table(key, columns, [[r.get(c) for c in columns] for r in rows])


@register("steer", "Goal tokens and input-only steering (GCG, universal, soft/PEZ, reward triggers) of the frozen "
                   "SFT policy; writes the side-by-side table.")
def steer_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    rows = datasets.load_from_disk(str(ctx.stage_path("build-data") / "sft"))
    policy_dir = ctx.stage_path("sft") / "model"
    reward_dir = ctx.stage_path("train-reward") / "model"
    tokenizer = load_tokenizer(policy_dir)
    model = ctx.place(load_causal_lm(policy_dir), "SFT policy (frozen)", frozen=True)
    model.eval()
    scorer = load_scorer(ctx, reward_dir)
    ctx.tracker.artifact(f"{cfg.run.name}-sft-policy", "model", policy_dir, use=True)
    ctx.tracker.artifact(f"{cfg.run.name}-reward-model", "model", reward_dir, use=True)

    # the side-by-side rows are sampled like eval-policy's (its prompts; steer.eval's temperature and length are
    # eval-policy's unless set, resolved in pipelines.config), so they compare
    ev = cfg.steer.eval
    held = held_out(ctx, scorer)
    result = run_steering_suite(
        model, tokenizer, rows, scorer, held, cfg.steer, out_dir=ctx.out,
        gold_fn=gold_score if cfg.scrape.source == "sim" else None, log=ctx.tracker.log,
    )

    for key, table in result.tables.items():
        _log_table(ctx, key, table)
    for key, png in result.images.items():
        ctx.tracker.image(key, png)
    _log_table(ctx, "steer/samples", result.samples)
    if (ctx.out / "goal_policy").is_dir():
        ctx.tracker.artifact(f"{cfg.run.name}-goal-policy", "model", ctx.out / "goal_policy")

    # the side-by-side table: eval-policy's rows (when that stage ran) + this stage's, same keys
    before = earlier_policy_rows(ctx.run_root) or [reference_row(held, tokenizer)]
    from_eval_policy = StageDir(ctx.run_root, "eval-policy").is_complete()
    table = before + result.rows
    (ctx.out / "side_by_side.json").write_text(json.dumps(table, indent=1))
    text = format_rows(table)
    note = "" if from_eval_policy else "(eval-policy has not completed in this run: SFT/PPO/best-of-n rows missing)\n"
    (ctx.out / "side_by_side.md").write_text(
        f"# Side by side\n\n{len(held)} held-out posts ({cfg.eval_policy.split}), temperature {ev.temperature}, "
        f"{ev.response_length} new tokens, {ev.samples_per_post} sample(s) per post; win rates against the "
        f"reference TL;DR with 95% Wilson CIs.\n{note}\n```\n{text}\n```\n"
    )
    ctx.tracker.table("steer/side_by_side", list(ROW_KEYS), [[r.get(c) for c in ROW_KEYS] for r in table])
    print(f"\n[steer] side by side ({ctx.out / 'side_by_side.md'})\n{note}{text}")
    m = result.metrics
    print(f"[steer] target steering: {m.get('steer/target/success_rate')} success over "
          f"{m.get('steer/target_cases')} cases (k={m.get('steer/target/k')}, top-{m.get('steer/target/top_n')}; "
          "anchor: Bhargava et al. 2023, 97% correct token / 85% top-75)")
    m["steer/side_by_side_rows"] = len(table)
    m["steer/side_by_side_from_eval_policy"] = len(before) if from_eval_policy else 0
    return m
