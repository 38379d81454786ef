"""Per-stage table of a finished pipeline run: wall time, where each model lived, throughput, peak GPU memory.

    python bench/gpu_demo_summary.py runs/gpu_demo/gpu_demo [--out summary.json]

Reads only what the stages write (DONE.json, metrics.json, metrics.jsonl, devices.json, config.yaml), so it
describes any run, GPU or CPU (bench/gpu_demo.sh calls it after the demo pipeline). Throughput columns:
pretrain/sft rows/s and reward-model pairs/s (the Trainer's train_samples_per_second), PPO episodes/s over
the whole training and its sampler's generation tokens/s (mean over updates), RLOO/GRPO completions/s,
eval-policy's generation tokens/s over every policy it samples, steer's seconds per target case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

STAGES = ("scrape", "build-data", "pretrain", "sft", "train-reward", "ppo", "eval-policy", "steer", "report")


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _mean_of(path: Path, key: str) -> float | None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return statistics.fmean(values) if values else None


def throughput(run: Path, stage: str, m: dict) -> dict[str, float]:
    """The numbers a stage's cost is read in (see module docstring); {} for stages without one."""
    out: dict[str, float | None] = {}
    if stage == "pretrain":
        out["rows/s"] = m.get("pretrain/train/train_samples_per_second")
    elif stage == "sft":
        out["rows/s"] = m.get("sft/train/train_samples_per_second")
        out["title-only rows/s"] = m.get("sft_short/train/train_samples_per_second")
    elif stage == "train-reward":
        out["pairs/s"] = m.get("rm/train/train_samples_per_second")
    elif stage == "ppo":
        out["episodes/s"] = m.get("ppo/episodes_per_second_overall")
        out["generation tokens/s"] = _mean_of(run / stage / "metrics.jsonl", "time/generate_tokens_per_second")
        cfg = yaml.safe_load((run / stage / "config.yaml").read_text()) if (run / stage / "config.yaml").is_file() else {}
        for base in (cfg.get("rl") or {}).get("baselines") or []:
            result = _read(run / stage / "baselines" / base["algo"] / "result.json")
            if result.get("seconds") and base.get("total_episodes"):
                out[f"{base['algo']} completions/s"] = base["total_episodes"] / result["seconds"]
    elif stage == "eval-policy":
        out["generation tokens/s"] = m.get("eval/generate_tokens_per_second")
    elif stage == "steer":
        out["s per target case"] = m.get("steer/target/seconds_per_case")
    return {k: v for k, v in out.items() if isinstance(v, (int, float))}


def summarize(run: Path) -> list[dict]:
    rows = []
    for stage in STAGES:
        done = _read(run / stage / "DONE.json")
        if not done:
            continue
        m = _read(run / stage / "metrics.json")
        rows.append({
            "stage": stage,
            "seconds": done.get("seconds"),
            "commit": done.get("commit"),
            "devices": _read(run / stage / "devices.json").get("models", {}),
            "throughput": throughput(run, stage, m),
            "peak_gpu_gb": m.get("memory/peak_gb"),
        })
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run folder (runs/<name>)")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = summarize(args.run)
    if not rows:
        print(f"{args.run}: no finished stage (no */DONE.json)", file=sys.stderr)
        return 1
    print(f"{'stage':<13}{'wall s':>8}{'peak GPU GB':>13}  throughput")
    for r in rows:
        tp = ", ".join(f"{k} {v:,.1f}" for k, v in r["throughput"].items()) or "-"
        peak = f"{r['peak_gpu_gb']:.2f}" if isinstance(r["peak_gpu_gb"], (int, float)) else "-"
        print(f"{r['stage']:<13}{r['seconds'] or 0:>8.1f}{peak:>13}  {tp}")
    print(f"{'total':<13}{sum(r['seconds'] or 0 for r in rows):>8.1f}   (commit {rows[-1]['commit']})")
    print("\nwhere each model lived (devices.json)")
    for r in rows:
        for role, where in r["devices"].items():
            print(f"  {r['stage']:<13}{role:<40}{where}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
