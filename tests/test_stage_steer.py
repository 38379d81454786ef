"""The `steer` stage on tiny fixtures: every part runs, the side-by-side table has its methods, weights are frozen."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch

from pipelines.config import ExperimentConfig
from pipelines.rundir import StageDir
from pipelines.stages import run_stage
from pipelines.stages import all as _all  # noqa: F401  (registers the stages)
from policy.device import ForwardAudit
from policy.goals.common import weights_fingerprint
from policy.evaluate import ROW_KEYS
from policy.goals.toy import toy_model, toy_prompts
from policy.models import load_causal_lm
from reward_model.calibration import wilson_interval
from reward_model.model import build_reward_model
from reward_model.scoring import RewardFileConfig

torch.set_num_threads(1)

# Every part at its smallest: a handful of steps, posts and tokens (the test checks wiring, not quality).
TINY = [
    "steer.target.n_cases=3", "steer.target.n_posts=2", "steer.target.gcg.num_steps=2",
    "steer.target.gcg.search_width=8", "steer.target.gcg.topk=8", "steer.target.k=3",
    "steer.universal.n_train_posts=2", "steer.universal.n_heldout_posts=2", "steer.universal.gcg.num_steps=2",
    "steer.universal.gcg.search_width=8", "steer.universal.gcg.n_tokens=3",
    "steer.soft.n_cases=1", "steer.soft.prompt.steps=2",
    "steer.goal.n_train_rows=8", "steer.goal.n_eval_posts=2", "steer.goal.goal.response_length=4",
    "steer.goal.goal.batch_size=4", "steer.goal.goal.n_buckets=2",
    "steer.reward_trigger.n_train_posts=2", "steer.reward_trigger.n_heldout_posts=2",
    "steer.reward_trigger.trigger.steps=1", "steer.reward_trigger.trigger.posts_per_step=1",
    "steer.reward_trigger.trigger.samples_per_post=2", "steer.reward_trigger.trigger.response_length=4",
    "steer.reward_trigger.trigger.n_candidates=2", "steer.reward_trigger.trigger.n_tokens=2",
    "steer.reward_trigger.trigger.eval_samples_per_post=1",
    "eval_policy.max_prompts=3", "steer.eval.samples_per_post=2", "steer.eval.response_length=6",
]


def _rows(n: int, seed: int) -> datasets.Dataset:
    prompts = toy_prompts(n, seed=seed)
    return datasets.Dataset.from_dict({
        "post_id": [f"p{seed}_{i}" for i in range(n)],
        "subreddit": ["tifu" if i % 2 else "relationships" for i in range(n)],
        "prompt": prompts,
        "completion": [" my friend and I need money for rent" if i % 3 else " the car broke down" for i in range(n)],
        "post_text": [p.split("POST: ")[1].split("\n\nTL;DR:")[0] for p in prompts],
        "score": [i * 7 % 11 for i in range(n)],
        "created_utc": [1.7e9 + i for i in range(n)],
    })


def _make_run(root: Path) -> Path:
    """build-data/sft, sft/model and train-reward/model, each a tiny real artifact, marked complete."""
    data = StageDir(root, "build-data")
    rows = datasets.DatasetDict({"train": _rows(12, 1), "validation": _rows(3, 2), "test": _rows(6, 3)})
    rows.save_to_disk(str(data.path / "sft"))
    data.finish(0)
    policy, tok = toy_model(seed=0, n_layer=1, n_embd=32, vocab_size=400)
    sft = StageDir(root, "sft")
    policy.save_pretrained(str(sft.path / "model"))
    tok.save_pretrained(str(sft.path / "model"))
    sft.finish(0)
    rm_dir = StageDir(root, "train-reward").path / "model"
    rm = build_reward_model(policy.config, tok, seed=1)
    rm.save_pretrained(str(rm_dir))
    tok.save_pretrained(str(rm_dir))
    RewardFileConfig(bias=0.1).save(rm_dir)
    StageDir(root, "train-reward").finish(0)
    return sft.path / "model"


@pytest.fixture(scope="module")
def steer_run(tmp_path_factory):
    from pipelines.configio import apply_overrides

    root = tmp_path_factory.mktemp("runs")
    policy_dir = _make_run(root / "t")
    before = weights_fingerprint(load_causal_lm(policy_dir))
    data = apply_overrides({"run": {"name": "t", "root": str(root), "wandb": {"enabled": False}}}, TINY)
    cfg = ExperimentConfig.model_validate(data)
    with ForwardAudit() as audit:
        metrics = run_stage("steer", cfg)
    return root / "t", policy_dir, before, metrics, audit


def test_stage_writes_side_by_side_with_every_method(steer_run):
    run, _, _, metrics, _ = steer_run
    out = run / "steer"
    assert StageDir(run, "steer").is_complete()
    table = json.loads((out / "side_by_side.json").read_text())
    methods = [r["method"] for r in table]
    assert methods == ["reference TL;DR", "SFT (steer sampler)", "goal token (top bucket)",
                       "reward trigger (discrete)", "soft reward prompt"]  # no eval-policy here: the reference row
    assert all(tuple(r) == ROW_KEYS for r in table)
    methods = methods[1:]
    n_posts = metrics["steer/eval/posts"]
    assert n_posts == 3  # eval_policy.max_prompts of the 6 test rows
    for r in table[1:]:
        assert r["rm_score"] is not None and r["gold"] is not None
        # A response without EOS has all 6 tokens (steer.eval.response_length), one with EOS 1 to 6.
        assert 1.0 + 5.0 * r["no_eos_rate"] - 1e-9 <= r["length"] <= 6.0
        # The 95% Wilson interval of the per-post wins, over the evaluated posts (not the samples).
        assert r["gold_win_ci"] == pytest.approx(list(wilson_interval(r["gold_win_rate"] * n_posts, n_posts)))
    by = {r["method"]: r for r in table}
    assert by["goal token (top bucket)"]["weights_changed"] is True
    assert not any(by[m]["weights_changed"] for m in methods if m != "goal token (top bucket)")
    assert abs(by["SFT (steer sampler)"]["kl"]) < 1e-3  # the SFT row writes with the SFT policy: KL is 0
    assert "reward trigger (discrete)" in (out / "side_by_side.md").read_text()
    # every part left its numbers and files
    cases = json.loads((out / "steer_target_steering_cases.json").read_text())  # the tracker's table file
    success = [row[cases["columns"].index("success")] for row in cases["rows"]]
    assert metrics["steer/target_cases"] == len(success) == 3
    assert metrics["steer/target/success_rate"] == pytest.approx(sum(success) / 3)
    assert metrics["steer/universal/heldout_posts"] == 2
    assert "steer/soft/pez/projected_success_rate" in metrics and "steer/soft/soft/retained_as_text" in metrics
    assert metrics["steer/goal/n_buckets"] == 2 and "steer/goal/spearman_reward" in metrics
    assert "steer/reward_trigger/soft/heldout_kl" in metrics
    assert (out / "sensitivity.png").stat().st_size > 1000
    assert (out / "goal_policy" / "config.json").is_file()
    cases = json.loads((out / "steer_target_steering_cases.json").read_text())
    assert len(cases["rows"]) == 3
    samples = json.loads((out / "steer_samples.json").read_text())
    assert {r[0] for r in samples["rows"]} == set(methods)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steer/weights_unchanged"] == 1 and all(k.startswith(("steer/", "time/")) for k in saved)


def test_every_model_the_stage_ran_followed_the_device_rule(steer_run):
    """Frozen policy, reward scorer and the goal-token copy all ran where `run.device` put them (the CPU here)."""
    run, _, _, _, audit = steer_run
    assert audit.seen and audit.problems("cpu") == []
    devices = json.loads((run / "steer" / "devices.json").read_text())
    assert devices["device"] == "cpu" and set(devices["models"]) == {"SFT policy (frozen)", "reward model (scoring)"}


def test_sft_policy_is_bit_identical_after_the_stage(steer_run):
    _, policy_dir, before, metrics, _ = steer_run
    assert weights_fingerprint(load_causal_lm(policy_dir)) == before  # the saved policy on disk
    assert metrics["steer/weights_fingerprint"] == before[:16]  # the in-memory policy, checked after every method
    assert metrics["steer/weights_checks"] >= 6


def test_side_by_side_appends_to_eval_policy_rows(tmp_path):
    from pipelines.stages.steer import earlier_policy_rows

    assert earlier_policy_rows(tmp_path) == []
    sd = StageDir(tmp_path, "eval-policy")
    sd.path.mkdir(parents=True)
    (sd.path / "policy_table.json").write_text(json.dumps([{"method": "PPO", "rm_score": 1.0}]))
    assert earlier_policy_rows(tmp_path) == []  # not complete yet: not read
    sd.finish(0)
    assert earlier_policy_rows(tmp_path)[0]["method"] == "PPO"
    (sd.path / "policy_table.json").write_text(json.dumps([{"rm_score": 1.0}]))
    with pytest.raises(ValueError, match="method"):
        earlier_policy_rows(tmp_path)
