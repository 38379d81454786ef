"""The whole pipeline at the smallest sizes (configs/tiny.yaml): simulated Reddit -> praw scrape -> pairs ->
tokenizer -> SFT -> reward model -> PPO -> evaluation -> steering -> report, in one process.

Checks what a user and a reviewer rely on: every stage completes and records its provenance, the report is
written from that run's numbers, W&B leaves offline runs with the expected metrics, tables and artifacts, and
no secret reaches any file under the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import configio
from pipelines.config import ExperimentConfig
from pipelines.demo import PIPELINE, run_demo
from pipelines.stages import STAGES
import pipelines.stages.all  # noqa: F401
from pipelines.stages.scrape import SIM_CLIENT_SECRET
from policy.device import ForwardAudit

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
USER_SECRET = "user-reddit-secret-9f8e7d"
WANDB_KEY = "wandbkey" + "0" * 32
AUDIT = ForwardAudit()  # every HF model that ran a forward during the tiny pipeline


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("REDDIT_CLIENT_SECRET", USER_SECRET)
    mp.setenv("WANDB_API_KEY", WANDB_KEY)
    cfg = configio.load(ExperimentConfig, CONFIGS / "tiny.yaml", [f"run.root={root}"])
    try:
        with AUDIT:
            run_demo(cfg, source="configs/tiny.yaml (test)")
    finally:
        mp.undo()
    return root / "tiny"


def test_every_stage_completes_with_provenance(tiny_run: Path) -> None:
    for stage in PIPELINE:
        if stage not in STAGES or STAGES[stage].always:
            continue
        done = json.loads((tiny_run / stage / "DONE.json").read_text())
        assert done["seed"] == 0 and done["commit"] and done["config"].startswith("configs/tiny.yaml"), stage
        assert (tiny_run / stage / "config.yaml").is_file()


def test_every_model_of_every_stage_followed_the_device_rule(tiny_run: Path) -> None:
    """Trained (pretrain, sft, train-reward, ppo, RLOO) and frozen (scoring, evaluation, steering) models alike ran
    where `run.device` put them, and each stage wrote where that was (devices.json)."""
    assert AUDIT.seen and AUDIT.problems("cpu") == []
    for stage in ("pretrain", "sft", "train-reward", "ppo", "eval-policy", "steer"):
        devices = json.loads((tiny_run / stage / "devices.json").read_text())
        assert devices["device"] == "cpu" and devices["models"], stage
        assert all(where.startswith("cpu ") for where in devices["models"].values()), stage


def test_report_is_written_from_this_run(tiny_run: Path) -> None:
    report = (tiny_run / "REPORT.md").read_text()
    card = json.loads((tiny_run / "build-data" / "data_card.json").read_text())
    assert f"| pairs | {card['splits']['pairs']['train']} |" in report
    assert "## 2. Reward model" in report and "Bayes ceiling" in report
    rm = json.loads((tiny_run / "train-reward" / "metrics.json").read_text())
    assert f"{rm['rm/accuracy']:.3f}" in report
    on_policy = json.loads((tiny_run / "eval-policy" / "on_policy_reward.json").read_text())["agreement"]
    assert "rank the policy's own samples" in report and f"{on_policy['accuracy']:.3f} [" in report
    assert f"a correlation of {on_policy['implied_rho']:.3f} [" in report
    vs_sft = json.loads((tiny_run / "eval-policy" / "vs_sft.json").read_text())
    last_ppo = max((m for m in vs_sft if m.startswith("PPO step")), key=lambda m: int(m.split()[-1]))
    assert f"Paired on the same {int(vs_sft[last_ppo]['gold_win']['prompts'])} prompts" in report
    assert f"{vs_sft[last_ppo]['gold_win']['mean']:+.3f} [" in report
    assert (tiny_run / "timings.png").is_file()


def test_wandb_offline_runs_have_metrics_tables_and_artifacts(tiny_run: Path) -> None:
    run_dirs = sorted((tiny_run / "wandb").glob("offline-run-*"))
    tracked = [s for s in PIPELINE if s in STAGES and STAGES[s].tracked]
    assert len(run_dirs) >= len(tracked)
    blobs = {d.name: b"".join(p.read_bytes() for p in d.rglob("*.wandb")) for d in run_dirs}
    everything = b"".join(blobs.values())
    for metric in (b"data/pairs_train", b"rm/accuracy", b"sft/samples", b"rm/by_ratio"):
        assert metric in everything, metric
    for artifact in (b"tiny-pairs", b"tiny-sft-policy", b"tiny-reward-model"):
        assert artifact in everything, artifact
    for stage in tracked:
        run_id = (tiny_run / stage / "wandb_run_id.txt").read_text().strip()
        assert any(name.endswith(run_id) for name in blobs), stage
        assert (tiny_run / stage / "metrics.jsonl").is_file()


def test_no_secret_in_any_file(tiny_run: Path) -> None:
    secrets = [USER_SECRET.encode(), WANDB_KEY.encode(), SIM_CLIENT_SECRET.encode()]
    for path in tiny_run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret not in data, f"{secret!r} found in {path}"


def test_cards_load_and_carry_this_runs_numbers(tiny_run: Path, tmp_path: Path) -> None:
    import datasets
    from huggingface_hub import DatasetCard, ModelCard

    def done_commit(stage: str) -> str:
        return json.loads((tiny_run / stage / "DONE.json").read_text())["commit"]

    def metrics(stage: str) -> dict:
        return json.loads((tiny_run / stage / "metrics.json").read_text())

    data_card = json.loads((tiny_run / "build-data" / "data_card.json").read_text())
    card = DatasetCard.load(tiny_run / "build-data" / "README.md", ignore_metadata_errors=False)
    sizes = {info["config_name"]: {s["name"]: s["num_examples"] for s in info["splits"]}
             for info in card.data.to_dict()["dataset_info"]}
    assert sizes == {"pairs": data_card["splits"]["pairs"], "sft": data_card["splits"]["sft"]}
    # Later stages have shuffled these splits (cache files in their folders): the configs still load exactly them.
    pairs = datasets.load_dataset(str(tiny_run / "build-data"), "pairs", cache_dir=str(tmp_path / "hf-cache"))
    assert {s: len(pairs[s]) for s in pairs} == data_card["splits"]["pairs"]
    assert f"`{done_commit('build-data')}`" in card.text and "| tiny | `build-data` | 0 |" in card.text

    rm = metrics("train-reward")
    card = ModelCard.load(tiny_run / "train-reward" / "model" / "README.md", ignore_metadata_errors=False)
    assert card.data.eval_results[0].metric_value == rm["rm/accuracy"]
    assert f"| {rm['rm/accuracy']:.3f} [{rm['rm/accuracy_ci_low']:.3f}, {rm['rm/accuracy_ci_high']:.3f}] |" in card.text
    assert f"| baseline: longer wins | {rm['rm/baseline/longer_wins']:.3f} |" in card.text
    assert f"`{done_commit('train-reward')}`" in card.text

    sft = metrics("sft")
    card = ModelCard.load(tiny_run / "sft" / "model" / "README.md", ignore_metadata_errors=False)
    assert card.data.eval_results[0].metric_value == sft["sft/eval/loss"]
    assert f"{sft['sft/params']:,} parameters" in card.text  # counted from the saved weights

    ppo = metrics("ppo")
    card = ModelCard.load(tiny_run / "ppo" / "policy" / "README.md", ignore_metadata_errors=False)
    assert f"| score | {ppo['objective/scores']:.3f} |" in card.text
    assert f"| KL to the SFT policy | {ppo['objective/kl']:.3f} |" in card.text


def test_publish_dry_run_links_cards_and_writes_missing_ones(tiny_run: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from huggingface_hub import ModelCard

    from pipelines.publish import _linked_card, plan, write_missing_cards
    from pipelines.stages import run_stage

    overrides = [f"run.root={tiny_run.parent}", "publish.repo_id=alice/tiny-upvote", "publish.dry_run=true"]
    cfg = configio.load(ExperimentConfig, CONFIGS / "tiny.yaml", overrides)
    run_stage("publish", cfg)
    out = capsys.readouterr().out
    assert f"{tiny_run / 'train-reward' / 'model'} -> alice/tiny-upvote-reward-model (model repo, private)" in out
    uploads = plan(cfg.publish, tiny_run)
    assert [u.repo_id for u in uploads] == ["alice/tiny-upvote-data", "alice/tiny-upvote-sft",
                                           "alice/tiny-upvote-reward-model", "alice/tiny-upvote-ppo"]
    assert not [u.problem for u in uploads if u.problem or u.card_missing]
    # Once pushed, the reward model's card names the dataset repo and its base, the SFT repo.
    pushed = {"dataset": uploads[0].repo_id, "sft_policy": uploads[1].repo_id}
    linked = ModelCard(str(_linked_card(uploads[2], pushed, include_sft_base=True)))
    assert linked.data.datasets == ["alice/tiny-upvote-data"] and linked.data.base_model == "alice/tiny-upvote-sft"
    assert linked.data.eval_results[0].dataset_type == "alice/tiny-upvote-data"

    # A stage that finished before cards existed: publish writes its card from the stage's own saved files.
    old = tmp_path / "tiny"
    shutil.copytree(tiny_run / "sft", old / "sft", ignore=shutil.ignore_patterns("checkpoints", "short_context"))
    (old / "sft" / "model" / "README.md").unlink()
    (sft_upload,) = plan(cfg.publish.model_copy(update={"include": ["sft_policy"]}), old)
    assert sft_upload.card_missing
    write_missing_cards([sft_upload], old)
    rewritten = ModelCard.load(old / "sft" / "model" / "README.md")
    assert rewritten.text == ModelCard.load(tiny_run / "sft" / "model" / "README.md").text
