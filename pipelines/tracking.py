"""Experiment tracking: one W&B run per stage, mirrored to local JSON files the report can read.

W&B is offline unless the user set `WANDB_MODE` (and a key) themselves; wandb has no local reader for its
`.wandb` files, so every logged metric also goes to `metrics.jsonl`, and the final numbers to
`metrics.json`. All runs of one run directory share a W&B group, so the dashboard shows a pipeline as one
experiment. Configs are scrubbed of secrets before they reach W&B or disk.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

# A key names a secret when it contains one of these, or is a credential token (`token`, `access_token`,
# `hf_token`...). Counts and names such as `n_tokens`, `max_new_tokens`, `init_token` or `tokenizer` are
# not secrets: redacting them made saved run configs unreproducible.
SECRET_KEY_PARTS = ("secret", "password", "passwd", "api_key", "apikey", "credential")
SECRET_TOKEN_KEY = re.compile(r"^(?:(?:access|refresh|auth|bearer|oauth|api|hub|hf|wandb|reddit)_?)?token$")
SECRET_ENV = ("REDDIT_CLIENT_SECRET", "REDDIT_PASSWORD", "WANDB_API_KEY", "HF_TOKEN")


def is_secret_key(key: object) -> bool:
    """True for keys that hold credentials (client_secret, api_key, access_token, ...)."""
    k = str(key).lower()
    return any(p in k for p in SECRET_KEY_PARTS) or bool(SECRET_TOKEN_KEY.match(k))


def scrub_secrets(value: Any) -> Any:
    """Return `value` with every secret-looking key's value and every known secret string replaced."""
    secrets = [os.environ[k] for k in SECRET_ENV if os.environ.get(k)]
    if isinstance(value, dict):
        return {k: "<redacted>" if is_secret_key(k) and v else scrub_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(v) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "<redacted>")
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Tracker:
    """Logs one stage: `log` (curves), `table`, `image`, `artifact`, `summary`; `finish` closes W&B.

    Use as a context manager. `enabled=False` keeps the local files and skips W&B (unit tests of stages);
    `writes=False` (the other processes of a launch) writes nothing at all.
    """

    def __init__(
        self,
        stage_dir: str | Path,
        stage: str,
        config: dict,
        group: str,
        project: str = "upvote-rlhf",
        enabled: bool = True,
        wandb_dir: str | Path | None = None,
        job_type: str | None = None,
        writes: bool = True,
    ) -> None:
        self.stage_dir = Path(stage_dir)
        self.stage = stage
        self.config = scrub_secrets(config)
        self.writes = writes
        if writes:
            self.stage_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.stage_dir / "metrics.jsonl", "a") if writes else None
        self._summary: dict[str, Any] = {}
        self.run = None
        if enabled and writes:
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            wdir = Path(wandb_dir or self.stage_dir.parent)
            wdir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=project,
                group=group,
                name=f"{group}/{stage}",
                job_type=job_type or stage,
                config=self.config,
                dir=str(wdir),
                reinit="finish_previous",
            )
            (self.stage_dir / "wandb_run_id.txt").write_text(self.run.id + "\n")

    # -- curves -------------------------------------------------------------------------------------
    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if not self.writes:
            return
        row = {k: _jsonable(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": step, **row}) + "\n")
        self._jsonl.flush()
        if self.run is not None:
            self.run.log(row, step=step)

    # -- rich objects -------------------------------------------------------------------------------
    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if not self.writes:
            return
        path = self.stage_dir / f"{key.replace('/', '_')}.json"
        path.write_text(json.dumps({"columns": columns, "rows": rows}, indent=1, default=str))
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(columns=columns, data=[[_jsonable(v) for v in r] for r in rows])})

    def image(self, key: str, path: str | Path) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path))})

    def artifact(self, name: str, type: str, path: str | Path, use: bool = False) -> None:
        """Log `path` as an output artifact (or, with use=True, declare it an input for lineage)."""
        if self.run is None:
            return
        import wandb

        if use and self.run.settings.mode == "offline":
            # Offline runs cannot declare inputs (wandb raises); record them in the config so the lineage
            # is still in the run, and the online run (or a re-run online) links the artifact itself.
            self.run.config.update({f"inputs/{name}": str(path)}, allow_val_change=True)
            return
        art = wandb.Artifact(name=name, type=type)
        path = Path(path)
        if path.is_dir():
            art.add_dir(str(path))
        else:
            art.add_file(str(path))
        if use:
            self.run.use_artifact(art)
        else:
            self.run.log_artifact(art)

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final numbers of the stage: W&B summary and `metrics.json` (what the report reads)."""
        self._summary.update({k: _jsonable(v) for k, v in metrics.items()})
        if not self.writes:
            return
        (self.stage_dir / "metrics.json").write_text(json.dumps(self._summary, indent=2, default=str))
        if self.run is not None:
            self.run.summary.update(self._summary)

    def finish(self) -> None:
        if self.writes:
            self._jsonl.close()
        if self.run is not None:
            import wandb

            wandb.finish()  # also closes a run a HF Trainer re-used (Trainer.train() leaves wandb.run open)
            self.run = None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
