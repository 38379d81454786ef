"""The resume guard: which setting changes block resuming a training stage, and which do not."""

import pytest
import yaml

from pipelines.config import ExperimentConfig
from pipelines.resume_check import ChangedSettings, changed_settings, check_resume


def saved(tmp_path, cfg: ExperimentConfig):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    (tmp_path / "checkpoints" / "step-2").mkdir(parents=True, exist_ok=True)  # something a resume would restore
    (tmp_path / "checkpoints" / "step-2" / "optimizer.pt").write_bytes(b"x")
    return tmp_path


def test_a_folder_without_checkpoints_resumes_nothing_and_is_not_refused(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(ExperimentConfig().model_dump(mode="json")))
    new = ExperimentConfig.model_validate({"reward": {"learning_rate": 5e-4}})
    check_resume("train-reward", tmp_path, new.model_dump(mode="json"))


def test_train_reward_refuses_a_new_learning_rate_and_names_both_ways_out(tmp_path):
    old = ExperimentConfig()
    new = ExperimentConfig.model_validate({"reward": {"learning_rate": 5e-4}})
    with pytest.raises(ChangedSettings) as err:
        check_resume("train-reward", saved(tmp_path, old), new.model_dump(mode="json"))
    assert "reward.learning_rate: 0.0003 -> 0.0005" in str(err.value)
    assert "--force" in str(err.value) and "reward.learning_rate=0.0003" in str(err.value)


def test_settings_of_other_stages_and_logging_do_not_block(tmp_path):
    old = ExperimentConfig()
    new = ExperimentConfig.model_validate({"ppo": {"kl_coef": 0.5, "save_every": 3},
                                           "reward": {"eval_steps": 7}})
    check_resume("train-reward", saved(tmp_path, old), new.model_dump(mode="json"))  # ppo is not its setting
    assert [k for k, _, _ in changed_settings(old.model_dump(mode="json"), new.model_dump(mode="json"),
                                              ("ppo",))] == ["ppo.kl_coef"]  # save_every is harmless
    check_resume("eval-policy", saved(tmp_path, old), new.model_dump(mode="json"))  # not a training stage


def test_a_new_seed_blocks_every_training_stage(tmp_path):
    old, new = ExperimentConfig(), ExperimentConfig.model_validate({"run": {"seed": 1}})
    for stage in ("pretrain", "sft", "train-reward", "ppo"):
        with pytest.raises(ChangedSettings, match=r"run\.seed: 0 -> 1"):
            check_resume(stage, saved(tmp_path, old), new.model_dump(mode="json"))


def test_an_interrupted_training_stage_without_checkpoint_restarts_clean(tmp_path):
    from pipelines.resume_check import restarts_clean

    (tmp_path / "ppo" / "checkpoints").mkdir(parents=True)  # created at the start, nothing saved yet
    (tmp_path / "ppo" / "metrics.jsonl").write_text('{"step": 1}\n')
    assert restarts_clean("ppo", tmp_path / "ppo")
    (tmp_path / "ppo" / "checkpoints" / "step-10").mkdir()
    (tmp_path / "ppo" / "checkpoints" / "step-10" / "model.safetensors").write_bytes(b"x")
    assert not restarts_clean("ppo", tmp_path / "ppo")  # a checkpoint to resume from
    assert not restarts_clean("scrape", tmp_path / "ppo")  # scrape resumes from its shards, never wiped
