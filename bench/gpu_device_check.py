"""Every model of every stage on the GPU: the whole pipeline at the tiny size, audited, on CUDA.

    python bench/gpu_device_check.py                      # run.device=cuda, run.dtype=bfloat16 (needs a GPU)
    python bench/gpu_device_check.py --device cpu         # the same check on the CPU (to check the script)

Runs scrape -> ... -> report on `configs/tiny.yaml` (a few minutes on a CPU, about one on a GPU) inside
`policy.device.ForwardAudit`, which records every HF model that ran a forward, wherever it was built (our
stages, TRL's reference model, the steering copies). Exits 1, listing them, if any ran off the requested
device or was never placed by the device rule; prints each stage's devices.json (role -> device, dtype).
Why: docs/gpu.md once said "every stage ran on CUDA unchanged" while the reward model scored on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="run.device to check")
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"), help="experiment config")
    ap.add_argument("--root", default=None, help="run root (default: a temporary folder)")
    ap.add_argument("overrides", nargs="*", help="more dotted.key=value overrides")
    args = ap.parse_args()

    from pipelines import configio
    from pipelines.config import ExperimentConfig
    from pipelines.demo import run_demo
    from policy.device import ForwardAudit, resolve_placement

    root = args.root or tempfile.mkdtemp(prefix="device_check_")
    gpu = args.device == "cuda"
    overrides = [f"run.root={root}", f"run.device={args.device}", "run.wandb.enabled=false",
                 f"run.dtype={'bfloat16' if gpu else 'float32'}", f"ppo.bf16={str(gpu).lower()}", *args.overrides]
    cfg = configio.load(ExperimentConfig, args.config, overrides)
    placement = resolve_placement(cfg.run.device, cfg.run.dtype)
    with ForwardAudit() as audit:
        run_demo(cfg, source=f"{args.config} (bench/gpu_device_check.py)")
    run = Path(cfg.run.root) / cfg.run.name
    print(f"\ndevice rule: {placement.describe()}")
    for devices in sorted(run.glob("*/devices.json")):
        models = json.loads(devices.read_text())["models"]
        for role, where in models.items():
            print(f"  {devices.parent.name:<13} {role:<38} {where}")
    problems = audit.problems(placement.device)
    print(f"\n{len(audit.seen)} models ran a forward; {len(problems)} off the rule")
    for line in problems:
        print(f"  OFF THE RULE: {line}")
    return 1 if problems or not audit.seen else 0


if __name__ == "__main__":
    sys.exit(main())
