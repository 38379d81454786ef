"""`python -m pipelines demo`: every stage in order, each skipped when complete, then the report.

Prints each stage's wall time and the total, so a user sees where the minutes go.
"""

from __future__ import annotations

import time

from pipelines.config import ExperimentConfig
from pipelines.stages import STAGES, run_root, run_stage
import pipelines.stages.all  # noqa: F401  (registers every stage the demo runs)

PIPELINE = ("scrape", "build-data", "pretrain", "sft", "train-reward", "ppo", "eval-policy", "steer", "report")


def run_demo(cfg: ExperimentConfig, force: bool = False, source: str = "") -> dict[str, float]:
    """Run the pipeline's stages that exist; returns seconds per stage."""
    timings: dict[str, float] = {}
    started = time.time()
    for name in PIPELINE:
        if name not in STAGES:
            print(f"[demo] stage '{name}' is not available in this version: skipped")
            continue
        t0 = time.time()
        run_stage(name, cfg, force=force, source=source)
        timings[name] = time.time() - t0
    total = time.time() - started
    print("\n[demo] wall time per stage")
    for name, seconds in timings.items():
        print(f"  {name:<14} {seconds:8.1f} s")
    print(f"  {'total':<14} {total:8.1f} s")
    report = run_root(cfg) / "REPORT.md"
    if report.exists():
        print(f"\n[demo] report: {report}")
    return timings
