"""`python -m pipelines study`: the stages that decide the headline claims, repeated over seeds.

    python -m pipelines study --config configs/demo.yaml [study.seeds=[0,1,2,3] study.redo_sft=true ...]

Reads  the run's own completed scrape, build-data, pretrain and sft (one data build and one SFT for every seed).
Runs   train-reward, ppo (with its gold control and rl.baselines) and eval-policy once per seed (+ pretrain and
       sft with study.redo_sft, + steer with study.steer), each through `run_stage` in its own run directory
       runs/<name>/study/<name>-seed-<k>/, whose shared stages are links to the run's own. A seed whose stages
       completed is skipped on a rerun, so an interrupted study, or one given more seeds, continues.
Writes study/study.json, study.md, per_seed.png: per claim the per-seed values, mean, std, min/max and a
       verdict across seeds (`pipelines.study`); the report cites them.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from pipelines.config import ExperimentConfig
from pipelines.rundir import StageDir, git_commit
from pipelines.stages import Context, register, run_root, run_stage
from pipelines.study import flat_metrics, format_markdown, plot_per_seed, summarize
from pipelines.tracking import Tracker, scrub_secrets

UPSTREAM = ("scrape", "build-data", "pretrain", "sft")
HEADLINE = ("train-reward", "ppo", "eval-policy")


def repeated_stages(cfg: ExperimentConfig) -> list[str]:
    """The stages each seed runs itself, in pipeline order."""
    return [*(("pretrain", "sft") if cfg.study.redo_sft else ()), *HEADLINE, *(("steer",) if cfg.study.steer else ())]


def seed_config(cfg: ExperimentConfig, seed: int, study_dir: Path) -> ExperimentConfig:
    """The run's config for one seed: its own run directory under `study_dir`, and `seed` in every section that
    seeds training (the data build, SFT unless redone, and eval-policy's prompt choice stay the run's)."""
    data = cfg.model_dump(mode="json")
    data["run"].update(root=str(study_dir), name=f"{cfg.run.name}-seed-{seed}", seed=seed)
    for section in ("reward", "ppo", "steer"):
        data[section]["seed"] = seed
    for baseline in data["rl"]["baselines"]:
        baseline["seed"] = seed
    if cfg.study.redo_sft:
        data["sft"]["seed"] = seed
    return ExperimentConfig.model_validate(data)


def comparable(config: dict) -> dict:
    """A config as a stage saves it (config.yaml), without what differs between a run and its seeds' folders by
    design (run.name, run.root) or does not change a stage's result (the study section)."""
    config = copy.deepcopy(config)
    config.pop("study", None)
    for key in ("name", "root"):
        (config.get("run") or {}).pop(key, None)
    return config


def saved_form(cfg: ExperimentConfig) -> dict:
    """`cfg` as `StageDir.start` writes it to config.yaml, read back (so the two compare like for like)."""
    return comparable(yaml.safe_load(yaml.safe_dump(scrub_secrets(cfg.model_dump(mode="json")), sort_keys=False)))


def config_differences(saved: object, current: object, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [d for k in sorted(set(saved) | set(current), key=str)
                for d in config_differences(saved.get(k), current.get(k), f"{prefix}{k}.")]
    return [] if saved == current else [prefix.rstrip(".")]


def stage_config(sd: StageDir) -> dict:
    path = sd.path / "config.yaml"
    return comparable(yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def link_stage(target: Path, link: Path) -> None:
    """`link` -> `target` (relative, so the run folder can move); replaces an older link (`check_seed_dirs` has
    refused folders in the way)."""
    if link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


def check_seed_dirs(ctx: Context, configs: dict[int, ExperimentConfig]) -> None:
    """Refuse, before any training, seed folders an earlier study wrote with other settings: resuming or reusing
    them would mix two configs' results in one table."""
    repeated = repeated_stages(ctx.cfg)
    for seed, cfg in configs.items():
        root, current = run_root(cfg), saved_form(cfg)
        for stage in UPSTREAM:
            if stage not in repeated and (root / stage).exists() and not (root / stage).is_symlink():
                raise RuntimeError(f"{root / stage} is a folder an earlier study trained (study.redo_sft?), not a link "
                                   f"to this run's {stage}: delete {ctx.out} to start the study over")
        for stage in repeated:
            sd = StageDir(root, stage)
            if sd.path.is_symlink() or not (sd.path / "config.yaml").is_file():
                continue
            changed = config_differences(stage_config(sd), current)
            if changed:
                keys = ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else "")
                raise RuntimeError(
                    f"{sd.path} was run with other settings ({keys}): its results would mix with this config's; "
                    f"delete {ctx.out} to start the study over, or give the run another run.name")


def run_seed(ctx: Context, cfg: ExperimentConfig, bar: tqdm) -> list[str]:
    """Run one seed's stages (each skipped when complete); returns the stages it linked from the run itself
    (`study.reuse_main_run`)."""
    root, seed = run_root(cfg), cfg.run.seed
    repeated = repeated_stages(ctx.cfg)
    for stage in UPSTREAM:
        if stage not in repeated and StageDir(ctx.run_root, stage).is_complete():
            link_stage(ctx.run_root / stage, root / stage)
    current = saved_form(cfg)
    reuse, reused = ctx.cfg.study.reuse_main_run, []
    for stage in repeated:
        sd, main = StageDir(root, stage), StageDir(ctx.run_root, stage)
        # a stage of the run itself with exactly this seed's settings, whose inputs were linked too, is this
        # seed's result already: link it instead of paying for it again (a folder this seed trained stays)
        own = sd.path.exists() and not sd.path.is_symlink()
        reuse = reuse and not own and main.is_complete() and not config_differences(stage_config(main), current)
        if reuse:
            link_stage(main.path, sd.path)
            reused.append(stage)
            bar.write(f"[study] seed {seed}: {stage} is the run's own (same settings): linked")
        else:
            if sd.path.is_symlink():  # linked by an earlier study; the run's own stage has changed since
                sd.path.unlink()
            run_stage(stage, cfg, source=f"{ctx.source or '(in-process config)'} [study seed {seed}]")
        bar.update(1)
    return reused


def _commits(roots: dict[int, Path], stages: list[str]) -> list[str]:
    found = set()
    for root in roots.values():
        for stage in stages:
            done = root / stage / "DONE.json"
            if done.is_file():
                found.add(json.loads(done.read_text()).get("commit", "?"))
    return sorted(found)


def _log_to_wandb(ctx: Context, study: dict, metrics: dict, png: Path | None) -> None:
    """The study's own W&B run, opened after the seeds' stages: each of those opens a W&B run, and wandb
    finishes the previous run on init, so one opened before them would be closed under the study."""
    cfg = ctx.cfg
    if not cfg.run.wandb.enabled or os.environ.get("WANDB_MODE") == "disabled":
        return
    seeds = study["seeds"]
    columns = ["claim", *[f"seed {s}" for s in seeds], "mean", "std", "min", "max", "verdict"]
    rows = [[c["label"], *c["values"], c["mean"], c["std"], c["min"], c["max"], c["verdict"]]
            for c in study["claims"].values()]
    with Tracker(ctx.out, "study", cfg.model_dump(mode="json"), group=cfg.run.name, project=cfg.run.wandb.project,
                 wandb_dir=ctx.run_root) as tracker:
        tracker.table("study/claims", columns, rows)
        if png is not None:
            tracker.image("study/per_seed", png)
        tracker.summary(metrics)


@register("study", "Repeat train-reward, ppo and eval-policy over seeds from this run's data and SFT; per claim "
          "the per-seed values, mean, spread and a verdict across seeds (study/study.md).",
          resumable=True, tracked=False, always=True)
def study_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    repeated = repeated_stages(cfg)
    ctx.stage_path("build-data")  # the inputs every seed shares: a clear error when they have not run
    if "sft" not in repeated:
        ctx.stage_path("sft")
    seeds = cfg.study.seeds
    configs = {seed: seed_config(cfg, seed, ctx.out) for seed in seeds}
    check_seed_dirs(ctx, configs)
    print(f"[study] {len(seeds)} seeds {seeds}, each runs {', '.join(repeated)} in {ctx.out}/{cfg.run.name}-seed-<k>")
    reused: dict[int, list[str]] = {}
    with tqdm(total=len(seeds) * len(repeated), desc="[study] seed stages", unit="stage") as bar:
        for i, seed in enumerate(seeds):
            bar.set_postfix_str(f"seed {seed} ({i + 1}/{len(seeds)})")
            reused[seed] = run_seed(ctx, configs[seed], bar)
    roots = {seed: run_root(c) for seed, c in configs.items()}

    # per claim: the seeds' values, their spread and a verdict (pipelines/study.py)
    study = summarize(roots)
    shared = [s for s in UPSTREAM if s not in repeated and StageDir(ctx.run_root, s).is_complete()]
    study.update({
        "run": cfg.run.name, "config": ctx.source, "repeated": repeated, "shared": shared,
        "seed_dirs": {str(s): str(r.relative_to(ctx.out)) for s, r in roots.items()},
        "reused_from_run": {str(s): stages for s, stages in reused.items() if stages},
        "commits": _commits(roots, repeated),
    })
    (ctx.out / "study.json").write_text(json.dumps(study, indent=1))
    png = plot_per_seed(study, ctx.out / "per_seed.png")
    header = [f"# Study: run `{cfg.run.name}` over {len(seeds)} seeds", "",
              f"Each seed ({', '.join(map(str, seeds))}) repeats {', '.join(repeated)} in its own run directory "
              f"(`study/{cfg.run.name}-seed-<k>/`) from this run's own {', '.join(shared)}; config "
              f"`{ctx.source or '(in-process config)'}`, commit {', '.join(f'`{c}`' for c in study['commits'])}.",
              "", "Each seed's cell is its value with that seed's 95% interval (paired bootstrap over prompts or "
              "pairs; Wilson for the reward model's accuracy). The verdict holds across seeds: *clearly above 0 "
              "in every seed* needs every seed's interval above 0; *mixed* means the seeds disagree in sign. "
              "std is over seeds (ddof 1)."]
    (ctx.out / "study.md").write_text(format_markdown(study, header, png.name if png else None))
    metrics = flat_metrics(study)
    _log_to_wandb(ctx, study, metrics, png)
    print(f"\n[study] {ctx.out / 'study.md'}\n{(ctx.out / 'study.md').read_text()}")
    return metrics
