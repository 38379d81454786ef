"""Stage registry: each CLI subcommand is a `Stage` whose function does the work of one pipeline step.

`run_stage` gives every stage the same life cycle: skip if complete, seed, resolve the device rule
(`policy.device`: `run.device`, `run.dtype`), save the resolved config, open a W&B run (one group per run
directory), call the function, record its final metrics, the commit that produced them and where each of
its models lived (`devices.json`), then mark the stage complete. Under `accelerate launch` / torchrun every process
runs the stage function (training needs them all); only the main one writes the folder and the W&B run.
"""

from __future__ import annotations

import os
import random
import time
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from data.sim.world import SimWorld
from pipelines.config import ExperimentConfig
from pipelines.resume_check import check_resume, restarts_clean
from pipelines.rundir import StageDir
from pipelines.tracking import Tracker
from policy.device import Placement, describe_model, place, resolve_placement


@dataclass
class Context:
    """What a stage function gets: the config, its folder, the run root, a tracker, and the config file +
    overrides it came from (`source`, recorded with the results of stages it runs itself: the study's seeds)."""

    cfg: ExperimentConfig
    stage_dir: StageDir
    tracker: Tracker
    source: str = ""
    placement: Placement = field(default_factory=lambda: resolve_placement("cpu"))
    models: dict[str, str] = field(default_factory=dict)  # role -> "device dtype" of each model the stage ran

    def place(self, model, role: str, frozen: bool = False):
        """Put `model` where the device rule says (frozen: also in `run.dtype`), record it under `role`, return it."""
        place(model, self.placement.device, self.placement.frozen_dtype if frozen else torch.float32)
        return self.record(role, model)

    def record(self, role: str, model):
        """Note where a model placed elsewhere (by a Trainer following the same rule) lives; returns it."""
        self.models[role] = f"{describe_model(model)} ({type(model).__name__})"
        print(f"[{self.stage_dir.stage}] {role}: {self.models[role]}")
        return model

    @property
    def out(self) -> Path:
        return self.stage_dir.path

    @property
    def run_root(self) -> Path:
        return self.stage_dir.root

    def stage_path(self, stage: str) -> Path:
        """Output folder of an earlier stage; a clear error if that stage has not completed."""
        other = StageDir(self.run_root, stage)
        if not other.is_complete():
            raise RuntimeError(
                f"stage '{self.stage_dir.stage}' needs the output of stage '{stage}' in {other.path}, which is "
                f"missing or incomplete: run `python -m pipelines {stage} --config ...` (or `make {stage}`) first"
            )
        return other.path


@dataclass
class Stage:
    name: str
    fn: Callable[[Context], dict]
    help: str
    resumable: bool = False  # True: an incomplete folder is resumed (checkpoints), not wiped
    tracked: bool = True  # False: no W&B run (e.g. serving the simulated Reddit)
    always: bool = False  # True: never skipped (the report must reflect the stages as they are now)
    keep_on_force: bool = False  # True: --force on a complete folder continues from its state too (scrape's shards)
    parallel: bool = False  # True: trains data-parallel under accelerate launch / torchrun; others run in one process


STAGES: dict[str, Stage] = {}


def register(name: str, help: str, resumable: bool = False, tracked: bool = True, always: bool = False,
             keep_on_force: bool = False, parallel: bool = False):
    def wrap(fn: Callable[[Context], dict]) -> Callable[[Context], dict]:
        STAGES[name] = Stage(name, fn, help, resumable, tracked, always, keep_on_force, parallel)
        return fn

    return wrap


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_WORLDS: dict[str, SimWorld] = {}


def sim_world(cfg: ExperimentConfig, progress: bool = False) -> SimWorld:
    """The simulated world of `cfg.world`, generated once per process.

    The world is deterministic in its config, so later stages regenerate it to read hidden truths (gold
    labels, the Bayes ceiling); within one process (`make demo`) the stages share one copy instead of
    paying the generation again. Stages only read it (the server answers with copies).
    """
    key = cfg.world.model_dump_json()
    if key not in _WORLDS:
        _WORLDS[key] = SimWorld.generate(cfg.world, progress=progress)
    return _WORLDS[key]


def run_root(cfg: ExperimentConfig) -> Path:
    return Path(cfg.run.root) / cfg.run.name


def distributed_state() -> PartialState:
    """This process's place in the launch (one process when not launched). A bare `PartialState()` ignores
    ACCELERATE_USE_CPU, so under torchrun on CPUs every process would think it runs alone, and the first
    state created is the one all later Accelerators share."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def run_stage(name: str, cfg: ExperimentConfig, force: bool = False, source: str = "") -> dict:
    """Run one stage with the common life cycle; returns its final metrics.

    `source` (config file + overrides) is recorded in DONE.json so every reported number names its config.
    """
    stage = STAGES[name]
    sd = StageDir(run_root(cfg), name)
    state = distributed_state()
    if state.num_processes > 1 and not stage.parallel:
        parallel = ", ".join(n for n, st in STAGES.items() if st.parallel)
        raise RuntimeError(
            f"stage '{name}' runs in one process, but this launch started {state.num_processes}: run it with "
            f"`python -m pipelines {name} ...` (only {parallel} train under accelerate launch / torchrun)"
        )
    if sd.is_complete() and not (force or stage.always):
        print(f"[{name}] complete output in {sd.path}: skipped (use --force to redo)")
        return sd.metrics()
    if cfg.run.wandb.mode:
        os.environ["WANDB_MODE"] = cfg.run.wandb.mode
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    seed_everything(cfg.run.seed)
    placement = resolve_placement(cfg.run.device, cfg.run.dtype)  # once per stage; every model follows it
    print(f"[{name}] device: {placement.describe()}")
    if placement.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(placement.device)
    started = time.time()
    main = state.is_main_process
    # Without --force an interrupted resumable stage continues from its own state, under the settings it started
    # with (check_resume). --force starts a training stage over, complete or not: resuming from a checkpoint would
    # restore the old run's optimizer and coefficients. scrape keeps its shards even then (keep_on_force).
    redo = force and not stage.keep_on_force
    if stage.resumable and not redo and not sd.is_complete():
        check_resume(name, sd.path, cfg.model_dump(mode="json"))  # before anything is written
    state.wait_for_everyone()  # every process has looked before the main one empties the folder
    if main:
        sd.start(cfg, fresh=not stage.resumable or redo or (not sd.is_complete() and restarts_clean(name, sd.path)))
    state.wait_for_everyone()
    tracker = Tracker(
        sd.path,
        name,
        cfg.model_dump(mode="json"),
        group=cfg.run.name,
        project=cfg.run.wandb.project,
        enabled=main and stage.tracked and cfg.run.wandb.enabled and os.environ.get("WANDB_MODE") != "disabled",
        wandb_dir=sd.root,
        writes=main,
    )
    with tracker:
        ctx = Context(cfg, sd, tracker, source, placement)
        metrics = stage.fn(ctx) or {}
        seconds = time.time() - started
        if placement.device.type == "cuda":  # the stage's peak on this process's GPU (what a launch config needs)
            metrics["memory/peak_gb"] = torch.cuda.max_memory_allocated(placement.device) / 2**30
        tracker.summary({**metrics, f"time/{name}_seconds": seconds})
    if main:
        (sd.path / "devices.json").write_text(json.dumps({
            "run.device": cfg.run.device, "run.dtype": cfg.run.dtype, "device": str(placement.device),
            "frozen_dtype": str(placement.frozen_dtype).removeprefix("torch."), "note": placement.note,
            "models": ctx.models}, indent=1) + "\n")
        sd.finish(seconds, seed=cfg.run.seed, config=source or "(in-process config)")
        print(f"[{name}] done in {seconds:.1f} s -> {sd.path}")
    state.wait_for_everyone()
    return metrics
