"""`python -m pipelines <stage> --config configs/X.yaml [dotted.key=value ...]`: one CLI for every stage."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pipelines import configio  # noqa: E402
from pipelines.config import ExperimentConfig  # noqa: E402
from pipelines.demo import run_demo  # noqa: E402
from data.empty_output import EmptyOutput  # noqa: E402
from data.sources.dumps import DumpFilesDamaged, DumpPathNotFound  # noqa: E402
from pipelines.resume_check import ChangedSettings  # noqa: E402
from pipelines.stages import STAGES, Stage, run_stage  # noqa: E402
import pipelines.stages.all  # noqa: E402,F401  (registers the stages)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="upvote-rlhf: RLHF from Reddit upvotes. Each subcommand runs one stage into runs/<name>/<stage>/.",
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    stages = [*STAGES.values(), Stage("demo", lambda ctx: {}, "Run every stage in order (skipping complete ones), then the report.")]
    for stage in stages:
        p = sub.add_parser(stage.name, help=stage.help, description=stage.help)
        p.add_argument("--config", default="configs/demo.yaml", help="experiment YAML (default: configs/demo.yaml)")
        p.add_argument("--force", action="store_true", help="redo the stage even if its complete output exists")
        p.add_argument("--allow-weak-reward", action="store_true",
                       help="let ppo start from a reward model below random or below longer-wins on its held-out "
                            "pairs (the same as ppo.allow_weak_reward=true)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. ppo.kl_coef=0.1")
    return parser


def parse_cli(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a stage, a config and its overrides (flags that stand for overrides folded in)."""
    parser = build_parser()
    # Overrides may come on both sides of a flag (`pretrain --config X --force pretrain.steps=150`): argparse
    # stops the positional list at the flag and leaves the rest over.
    args, rest = parser.parse_known_args(argv)
    stray = [a for a in rest if a.startswith("-") or "=" not in a]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)} (overrides are dotted.key=value)")
    args.overrides = [*args.overrides, *rest]
    if args.allow_weak_reward:
        args.overrides.append("ppo.allow_weak_reward=true")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    try:
        cfg = configio.load(ExperimentConfig, args.config, args.overrides)
    except configio.ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return 2
    for note in cfg.notes:
        print(f"[config] {note}", file=sys.stderr)
    source = " ".join([args.config, *args.overrides])
    try:
        if args.stage == "demo":
            run_demo(cfg, force=args.force, source=source)
        else:
            run_stage(args.stage, cfg, force=args.force, source=source)
    # errors whose message says what to do: a traceback would bury it
    except (ChangedSettings, EmptyOutput, DumpFilesDamaged, DumpPathNotFound) as err:
        print(f"[{args.stage}] {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
