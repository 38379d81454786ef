"""Run directories: `runs/<name>/<stage>/`, with the resolved config, provenance and a completion marker.

A stage is complete when its `DONE.json` exists (written last, after every output). A rerun skips a
complete stage and replaces an incomplete one (or resumes it, for stages that checkpoint), so outputs of
two attempts are never mixed.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from pipelines.tracking import scrub_secrets

if TYPE_CHECKING:
    from pipelines.config import ExperimentConfig


def git_commit() -> str:
    """The commit that produced a result (+ '-dirty' with uncommitted changes), or 'unknown' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class StageDir:
    """One stage's output folder."""

    def __init__(self, run_root: Path, stage: str) -> None:
        self.root = run_root
        self.stage = stage
        self.path = run_root / stage

    @property
    def done_file(self) -> Path:
        return self.path / "DONE.json"

    def is_complete(self) -> bool:
        return self.done_file.is_file()

    def start(self, config: BaseModel, fresh: bool = False) -> Path:
        """Create the folder (emptied when `fresh`: an incomplete stage that cannot resume) and save the config."""
        if fresh and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        resolved = scrub_secrets(config.model_dump(mode="json"))
        import yaml

        (self.path / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        return self.path

    def finish(self, seconds: float, **extra: object) -> None:
        info = {
            "stage": self.stage,
            "seconds": round(seconds, 2),
            "commit": git_commit(),
            "finished_utc": time.time(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            **extra,
        }
        self.done_file.write_text(json.dumps(info, indent=2, default=str))

    def metrics(self) -> dict:
        path = self.path / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def load_finished_sim_run(
    run: Path, config: Path, overrides: list[str], stages: tuple[str, ...]
) -> "ExperimentConfig | None":
    """The `ExperimentConfig` of a finished simulated-world run, for the diagnostics in bench/ that read one:
    None (with a "skipped" line) when one of `stages` is not complete in `run`; SystemExit naming the config
    when it is not the simulated world, the only one with gold."""
    from pipelines import configio
    from pipelines.config import ExperimentConfig

    if not all(StageDir(run, stage).is_complete() for stage in stages):
        print(f"skipped: {run} lacks finished {'/'.join(stages)} stages (make demo first)")
        return None
    cfg = configio.load(ExperimentConfig, config, overrides)
    if cfg.scrape.source != "sim":
        raise SystemExit(f"{config}: scrape.source is {cfg.scrape.source!r}; gold exists only in the simulated world (sim)")
    return cfg
