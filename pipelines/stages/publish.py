"""`python -m pipelines publish`: the run's dataset and models, with their cards, to the Hugging Face Hub
(`pipelines/publish.py` says what goes where). Never part of `make demo`: publishing is always asked for."""

from __future__ import annotations

import sys

from pipelines.publish import PublishRefused, publish
from pipelines.rundir import git_commit
from pipelines.stages import Context, register


@register("publish", "Push the run's dataset and models (with their cards) to the Hugging Face Hub "
          "(publish.repo_id, HF_TOKEN; publish.dry_run=true lists what would go where).", tracked=False, always=True)
def publish_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    try:
        return publish(cfg.publish, ctx.run_root, cfg.run.name, git_commit(), cfg.reward.model_name_or_path is None,
                       ctx.out)
    except PublishRefused as err:  # a message that says what to set, not a traceback
        print(f"[publish] {err}", file=sys.stderr)
        raise SystemExit(1) from None
