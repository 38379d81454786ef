"""An interrupted training stage resumes only under the settings it started with.

A checkpoint holds the optimizer, the learning-rate schedule, PPO's beta and the RNG states of the run that
wrote it. Resuming it under a changed `ppo.kl_coef` or `reward.learning_rate` would restore the OLD values
while the run folder records the new ones. So a resume compares the stage's saved `config.yaml` with the
config it is asked to run, over the sections that shape what the stage trains, and refuses with the changed
keys and the two ways out: `--force` (start over with the new values) or the old values (resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

# Config sections (dotted prefixes) that shape what each resumable training stage trains.
RESUME_SECTIONS: dict[str, tuple[str, ...]] = {
    "pretrain": ("run.seed", "pretrain", "policy", "tokenizer"),
    "sft": ("run.seed", "sft", "policy"),
    "train-reward": ("run.seed", "reward"),
    "ppo": ("run.seed", "ppo", "rl"),
}
# Leaf settings that change what is logged or saved, not what is trained.
HARMLESS = {"allow_weak_reward", "progress", "save_every", "sample_every", "num_samples", "n_samples", "logging_steps", "eval_steps",
            "max_eval_rows", "max_eval_pairs", "save_steps", "resume", "scoring_batch_size"}


class ChangedSettings(RuntimeError):
    """An interrupted stage was asked to resume under other settings."""


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def changed_settings(saved: Mapping, now: Mapping, sections: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, new value) for every setting under `sections` that differs."""
    def pick(tree: Mapping) -> dict[str, Any]:
        return {k: v for k, v in _flatten(tree)
                if any(k == s or k.startswith(s + ".") for s in sections) and k.rsplit(".", 1)[-1] not in HARMLESS}

    before, after = pick(saved), pick(now)
    return [(k, before.get(k), after.get(k)) for k in sorted(before.keys() | after.keys())
            if before.get(k) != after.get(k)]


def has_checkpoint(stage_path: Path) -> bool:
    """Whether a stage folder holds a saved checkpoint (a file under a `checkpoint*` folder) to resume from."""
    return any(f.is_file() for d in stage_path.rglob("checkpoint*") if d.is_dir() for f in d.rglob("*"))


def restarts_clean(stage: str, stage_path: Path) -> bool:
    """An interrupted training stage with no checkpoint has nothing to resume: it starts over in an emptied
    folder, so the killed attempt's curve is not mixed into the new one's metrics.jsonl."""
    return stage in RESUME_SECTIONS and stage_path.exists() and not has_checkpoint(stage_path)


def check_resume(stage: str, stage_path: Path, config: Mapping) -> None:
    """Raise `ChangedSettings` when `stage_path` holds an interrupted run of `stage` saved under other settings."""
    saved_path = stage_path / "config.yaml"
    if stage not in RESUME_SECTIONS or not saved_path.is_file():
        return
    if not has_checkpoint(stage_path):
        return  # stopped before its first checkpoint (e.g. refused at the start): nothing would be restored
    saved = yaml.safe_load(saved_path.read_text()) or {}
    changes = changed_settings(saved, config, RESUME_SECTIONS[stage])
    if not changes:
        return
    listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes)
    old_values = " ".join(f"{k}={yaml.safe_dump(old, default_flow_style=True).strip().removesuffix('...').strip()}"
                          for k, old, _ in changes)
    raise ChangedSettings(
        f"{stage_path} holds an interrupted '{stage}' run started with other settings ({listed}). Its checkpoint "
        f"would restore the old optimizer, schedule and coefficients. Either rerun with --force to start over "
        f"with the new settings, or resume with the old ones: {old_values}"
    )
