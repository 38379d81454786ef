"""The study stage at the smallest size (configs/tiny.yaml, 2 seeds): per claim the seeds' values, mean, spread and
a verdict across seeds, read from each seed's own stage outputs; seed 0 reuses the run's own stages, seed 1 trains
its own; a rerun trains nothing; a seed folder of other settings is refused; the report cites the study.
The verdict rules and the report's "single seed" wording are checked on hand-made numbers first (fast)."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from pipelines import configio
from pipelines.config import ExperimentConfig
from pipelines.report import _policy_verdict
from pipelines.stages import run_stage
import pipelines.stages.all  # noqa: F401  (registers the stages)
from pipelines.study import Estimate, verdict

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
VERDICT = re.compile(r"^(clearly (above|below) 0 in every seed|(above|below) 0 in every seed, clearly \(95% CI\) in "
                     r"\d of 2|exactly 0 in every seed|mixed: above 0 in \d of 2 seeds .*)$")


def test_verdict_across_seeds() -> None:
    assert verdict([Estimate(0.03, 0.01, 0.05), Estimate(0.02, 0.001, 0.04)]) == ("above", "clearly above 0 in every seed")
    assert verdict([Estimate(0.03, 0.01, 0.05), Estimate(0.02, -0.01, 0.04)]) == (
        "above", "above 0 in every seed, clearly (95% CI) in 1 of 2")
    assert verdict([Estimate(-0.03, -0.05, -0.01), Estimate(-0.02, -0.04, -0.001)])[0] == "below"
    direction, words = verdict([Estimate(0.03, 0.01, 0.05), Estimate(-0.02, -0.04, 0.01), Estimate(0.0, -0.1, 0.1)])
    assert direction == "mixed" and words.startswith("mixed: above 0 in 1 of 3 seeds (1 clearly), below in 1 (0 clearly)")
    assert verdict([Estimate(0.1), Estimate(0.2)]) == ("above", "above 0 in every seed (no per-seed CI)")


def _row(method: str) -> dict:
    return {"method": method, "gold_win_rate": 0.1, "gold_win_ci": [0.05, 0.2], "rm_score": 0.0, "gold": 0.6, "kl": 1.0}


def test_policy_verdict_says_single_seed_without_a_study() -> None:
    table = [_row("SFT"), _row("PPO step 40")]
    gain = {"mean": 0.057, "lo": 0.021, "hi": 0.095, "p_not_above": 0.0, "prompts": 108}
    vs_sft = {"PPO step 40": {"gold_win": gain, "gold": gain}}
    alone = "\n".join(_policy_verdict(table, vs_sft))
    assert "clearly above SFT (single seed" in alone and "Across the study's seeds" not in alone
    study = {"seeds": [0, 1, 2], "claims": {
        "ppo_final/gold_win": {"mean": 0.021, "std": 0.03, "min": -0.004, "max": 0.057, "n": 3,
                               "verdict": "above 0 in every seed, clearly (95% CI) in 1 of 3"}}}
    across = "\n".join(_policy_verdict(table, vs_sft, study))
    assert ("gold win rate mean +0.021 (std 0.030, -0.004 to +0.057) over 3 seeds: above 0 in every seed, clearly "
            "(95% CI) in 1 of 3") in across
    assert "clearly above SFT in this run's seed" in across and "single seed" not in across


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExperimentConfig]:
    """A tiny run (no steering) whose study ran over seeds 0 and 1, then its report."""
    root = tmp_path_factory.mktemp("runs")
    cfg = configio.load(ExperimentConfig, CONFIGS / "tiny.yaml", [f"run.root={root}", "study.seeds=[0, 1]"])
    for stage in ("scrape", "build-data", "pretrain", "sft", "train-reward", "ppo", "eval-policy", "study", "report"):
        run_stage(stage, cfg, source="configs/tiny.yaml (test)")
    return root / "tiny", cfg


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_study_table_has_every_claim_per_seed(studied: tuple[Path, ExperimentConfig]) -> None:
    run, _ = studied
    study = _json(run / "study" / "study.json")
    assert study["seeds"] == [0, 1] and study["repeated"] == ["train-reward", "ppo", "eval-policy"]
    claims = study["claims"]
    for key in ("rm_gap_to_ceiling", "rm_minus_longer_wins", "ppo_final/gold_win", "ppo_final/gold",
                "best_of_n/gold_win", "rloo/gold", "ppo_on_gold_control/gold_win", "ppo_on_gold_control/gold"):
        c = claims[key]
        assert len(c["values"]) == len(c["ci"]) == 2 and c["n"] == 2, key
        assert c["mean"] == pytest.approx(statistics.mean(c["values"])), key
        assert c["std"] == pytest.approx(statistics.stdev(c["values"])), key
        assert (c["min"], c["max"]) == (min(c["values"]), max(c["values"])), key
        assert all(lo <= v <= hi for v, (lo, hi) in zip(c["values"], c["ci"])), key
        assert VERDICT.match(c["verdict"]), (key, c["verdict"])
    assert "steer_target_success" not in claims  # study.steer is off by default
    md = (run / "study" / "study.md").read_text()
    assert "| claim | seed 0 | seed 1 | mean | std | min .. max | verdict across seeds |" in md
    assert sum(line.startswith("| ") for line in md.splitlines()) == 2 + len(claims)
    assert (run / "study" / "per_seed.png").stat().st_size > 0


@pytest.mark.slow
def test_each_seed_is_its_own_training_from_one_sft(studied: tuple[Path, ExperimentConfig]) -> None:
    run, _ = studied
    study = _json(run / "study" / "study.json")
    seed0, seed1 = (run / "study" / study["seed_dirs"][s] for s in ("0", "1"))
    # seed 0 has the run's own settings: its stages are the run's (linked, not trained twice)
    assert study["reused_from_run"] == {"0": ["train-reward", "ppo", "eval-policy"]}
    assert (seed0 / "ppo").resolve() == (run / "ppo").resolve()
    for seed_dir in (seed0, seed1):  # one data build and one SFT for every seed
        assert (seed_dir / "sft").is_symlink() and (seed_dir / "sft").resolve() == (run / "sft").resolve()
    # seed 1 trained its own reward model and policies with seed 1 in every training section
    assert not (seed1 / "train-reward").is_symlink() and _json(seed1 / "train-reward" / "DONE.json")["seed"] == 1
    saved = configio.parse_yaml((seed1 / "ppo" / "config.yaml").read_text())
    assert saved["ppo"]["seed"] == saved["reward"]["seed"] == saved["rl"]["baselines"][0]["seed"] == 1
    assert saved["eval_policy"]["seed"] == 0  # the same held-out prompts for every seed
    for s, seed_dir in ((0, seed0), (1, seed1)):
        rm = _json(seed_dir / "train-reward" / "metrics.json")
        assert study["claims"]["rm_gap_to_ceiling"]["values"][s] == rm["rm/gap_to_ceiling"]
        vs_sft = _json(seed_dir / "eval-policy" / "vs_sft.json")
        assert study["claims"]["ppo_final/gold"]["values"][s] == vs_sft["PPO step 1"]["gold"]["mean"]


@pytest.mark.slow
def test_rerun_trains_nothing_and_refuses_other_settings(studied: tuple[Path, ExperimentConfig]) -> None:
    run, cfg = studied
    seed1_done = run / "study" / "tiny-seed-1" / "ppo" / "DONE.json"
    before = seed1_done.read_text()
    run_stage("study", cfg)
    assert seed1_done.read_text() == before
    changed = configio.load(ExperimentConfig, CONFIGS / "tiny.yaml",
                            [f"run.root={run.parent}", "study.seeds=[0, 1]", "ppo.kl_coef=0.5"])
    with pytest.raises(RuntimeError, match=r"tiny-seed-1/train-reward was run with other settings \(ppo.kl_coef, rl.baselines\)"):
        run_stage("study", changed)
    assert seed1_done.read_text() == before


@pytest.mark.slow
def test_report_cites_the_study(studied: tuple[Path, ExperimentConfig]) -> None:
    run, _ = studied
    report = (run / "REPORT.md").read_text()
    claims = _json(run / "study" / "study.json")["claims"]
    assert "## Across seeds: the study" in report and "![per-seed values](study/per_seed.png)" in report
    gap, win = claims["rm_gap_to_ceiling"], claims["ppo_final/gold_win"]
    assert f"Across the study's seeds the gap is mean {gap['mean']:+.3f} (std {gap['std']:.3f}" in report
    assert f"over 2 seeds: {gap['verdict']}" in report
    assert f"**Across the study's seeds**" in report and f"gold win rate mean {win['mean']:+.3f}" in report
    assert "single seed" not in report.lower()
