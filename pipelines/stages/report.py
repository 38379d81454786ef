"""`python -m pipelines report`: write runs/<name>/REPORT.md from every completed stage's outputs."""

from __future__ import annotations

from pipelines.report import write_report
from pipelines.stages import Context, register


@register("report", "Write runs/<name>/REPORT.md (numbers, tables, PNG plots) from the completed stages.", always=True)
def report_stage(ctx: Context) -> dict:
    path = write_report(ctx.run_root)
    ctx.tracker.artifact(f"{ctx.cfg.run.name}-report", "report", path)
    print(f"[report] {path}")
    return {}
