"""Config loading: presets, overrides, and errors that name the bad key."""

import pytest

from pipelines import configio
from pipelines.config import ExperimentConfig


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_extends_and_overrides_merge(tmp_path):
    write(tmp_path, "base.yaml", "run:\n  name: base\n  seed: 3\npolicy:\n  n_layer: 2\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nrun:\n  name: child\n")
    cfg = configio.load(ExperimentConfig, child, ["policy.n_embd=64", "run.wandb.enabled=false"])
    assert cfg.run.name == "child"
    assert cfg.run.seed == 3  # inherited
    assert cfg.policy.n_layer == 2 and cfg.policy.n_embd == 64
    assert cfg.run.wandb.enabled is False


def test_unknown_key_is_named_with_alternatives(tmp_path):
    path = write(tmp_path, "bad.yaml", "policy:\n  n_layers: 2\n")
    with pytest.raises(configio.ConfigError) as err:
        configio.load(ExperimentConfig, path)
    message = str(err.value)
    assert "policy.n_layers" in message and "n_layer" in message and "bad.yaml" in message


def test_wrong_type_is_named(tmp_path):
    path = write(tmp_path, "ok.yaml", "run:\n  name: x\n")
    with pytest.raises(configio.ConfigError) as err:
        configio.load(ExperimentConfig, path, ["run.seed=abc"])
    assert "run.seed" in str(err.value) and "'abc'" in str(err.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(configio.ConfigError, match="not found"):
        configio.load(ExperimentConfig, tmp_path / "nope.yaml")
    path = write(tmp_path, "ok.yaml", "{}\n")
    with pytest.raises(configio.ConfigError, match="dotted.key=value"):
        configio.load(ExperimentConfig, path, ["run.seed"])


def test_every_field_is_documented():
    """A setting is documented once, where it is defined: every config field carries a description."""
    from pydantic import BaseModel

    missing = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            elif not field.description:
                missing.append(prefix + name)

    walk(ExperimentConfig, "")
    assert not missing, f"fields without a description: {missing}"


@pytest.mark.parametrize("name", ["demo.yaml", "tiny.yaml", "tldr_pythia.yaml", "reddit.yaml", "dumps.yaml"])
def test_shipped_configs_validate(name):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "configs" / name
    cfg = configio.load(ExperimentConfig, path)
    assert cfg.run.name == name.removesuffix(".yaml")


def test_gold_control_switches_off_with_a_note_for_real_sources(tmp_path):
    """A simulator preset (the demo turns the gold control on) runs on a real source as written."""
    path = write(tmp_path, "real.yaml", "scrape:\n  source: reddit\nrl:\n  gold_control: true\n")
    cfg = configio.load(ExperimentConfig, path)
    assert cfg.rl.gold_control is False
    assert any("rl.gold_control switched off" in n and "reddit" in n for n in cfg.notes)
    sim = configio.load(ExperimentConfig, write(tmp_path, "sim.yaml", "rl:\n  gold_control: true\n"))
    assert sim.rl.gold_control is True and sim.notes == []


def test_a_bad_date_is_a_config_error_naming_key_and_origin(tmp_path):
    """`2024-13-01` is a pydantic error on the key (PyYAML's own date parser raised a bare ValueError)."""
    path = write(tmp_path, "d.yaml", "scrape:\n  source: dumps\n  dumps:\n    paths: [x.zst]\n    start_date: 2024-13-01\n")
    with pytest.raises(configio.ConfigError) as err:
        configio.load(ExperimentConfig, path)
    assert str(err.value).startswith(f"{path}: scrape.dumps.start_date:") and "month" in str(err.value)
    ok = write(tmp_path, "ok.yaml", "scrape:\n  source: dumps\n  dumps:\n    paths: [x.zst]\n    start_date: 2024-01-31\n")
    assert str(configio.load(ExperimentConfig, ok).scrape.dumps.start_date) == "2024-01-31"
    with pytest.raises(configio.ConfigError) as err:
        configio.load(ExperimentConfig, ok, ["scrape.dumps.end_date=2024-02-30"])
    assert str(err.value).startswith("command line 'scrape.dumps.end_date=2024-02-30': scrape.dumps.end_date:")


def test_errors_are_blamed_on_their_origin(tmp_path):
    path = write(tmp_path, "f.yaml", "run:\n  seed: 1\n")
    with pytest.raises(configio.ConfigError) as err:
        configio.load(ExperimentConfig, path, ["ppo.kl_cof=0.1"])
    assert str(err.value).startswith("command line 'ppo.kl_cof=0.1': unknown key 'ppo.kl_cof'")
    bad_file = write(tmp_path, "g.yaml", "run:\n  seed: abc\n")
    with pytest.raises(configio.ConfigError) as err:
        configio.load(ExperimentConfig, bad_file, ["ppo.kl_coef=0.1"])
    assert str(err.value).startswith(f"{bad_file}: run.seed:")


def test_lengths_must_agree(tmp_path):
    """A reward model, SFT or PPO cap below the prompt budget + response would cut the prompt's head."""
    path = write(tmp_path, "ok.yaml", "{}\n")
    with pytest.raises(configio.ConfigError) as err:
        configio.load(ExperimentConfig, path, ["reward.max_length=640"])
    msg = str(err.value)
    assert msg.startswith("command line 'reward.max_length=640'") and "769" in msg
    with pytest.raises(configio.ConfigError, match=r"ppo\.max_prompt_length=256 is below 512"):
        configio.load(ExperimentConfig, path, ["ppo.max_prompt_length=256"])
    with pytest.raises(configio.ConfigError, match=r"sft\.max_length=641 is above policy\.n_positions=600"):
        configio.load(ExperimentConfig, path, ["policy.n_positions=600"])
    cfg = configio.load(ExperimentConfig, path, ["data.prompt.max_prompt_tokens=256", "ppo.max_prompt_length=256"])
    assert cfg.reward.max_length >= 256 + 256 + 1


def test_force_may_follow_the_overrides(tmp_path, capsys):
    """`--force` anywhere on the line; a stray flag is named."""
    from pipelines.__main__ import build_parser, main

    with pytest.raises(SystemExit):
        main(["pretrain", "--config", "configs/tiny.yaml", "--force", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    code = main(["pretrain", "--config", "configs/tiny.yaml", "run.seed=1", "--force", "reward.max_length=10"])
    assert code == 2 and "command line 'reward.max_length=10'" in capsys.readouterr().err


def test_run_seed_reaches_every_training_section_unless_one_sets_its_own(tmp_path):
    path = write(tmp_path, "seeded.yaml", "run:\n  seed: 1\nsft:\n  seed: 7\nrl:\n  baselines:\n    - {algo: rloo}\n")
    cfg = configio.load(ExperimentConfig, path)
    assert (cfg.policy.seed, cfg.reward.seed, cfg.ppo.seed, cfg.eval_policy.seed, cfg.steer.seed) == (1, 1, 1, 1, 1)
    assert cfg.rl.baselines[0].seed == 1  # through ppo
    assert cfg.sft.seed == 7  # set in the file: it wins
    cfg = configio.load(ExperimentConfig, path, ["ppo.seed=5", "run.seed=2"])
    assert (cfg.ppo.seed, cfg.rl.baselines[0].seed, cfg.reward.seed, cfg.sft.seed) == (5, 5, 2, 7)
    assert cfg.world.seed == 0 and cfg.data.pairs.seed == 0  # the data keeps its own seeds
    # the saved form (config.yaml) holds the resolved values: loading it again changes nothing
    again = ExperimentConfig.model_validate(cfg.model_dump(mode="json"))
    assert again.model_dump() == cfg.model_dump()


def test_fallbacks_are_filled_once_on_loading(tmp_path):
    path = write(tmp_path, "f.yaml", "ppo:\n  temperature: 0.9\n  response_length: 40\n  learning_rate: 2.0e-5\n"
                                     "eval_policy:\n  samples_per_prompt: 3\nsteer:\n  eval: {response_length: 30}\n")
    cfg = configio.load(ExperimentConfig, path)
    ev = cfg.eval_policy
    assert (ev.temperature, ev.response_length, ev.max_prompt_length) == (0.9, 40, cfg.ppo.max_prompt_length)
    assert (cfg.steer.eval.temperature, cfg.steer.eval.samples_per_post, cfg.steer.eval.response_length) == (0.9, 3, 30)
    assert cfg.ppo.value_learning_rate == 2.0e-5
    assert cfg.pretrain.learning_rate == cfg.sft.learning_rate
    assert cfg.reward.short_context.learning_rate == cfg.reward.learning_rate
    saved = cfg.model_dump(mode="json")
    filled = [saved["eval_policy"]["temperature"], saved["eval_policy"]["response_length"],
              saved["ppo"]["value_learning_rate"], saved["pretrain"]["learning_rate"], *saved["steer"]["eval"].values()]
    assert None not in filled


def test_allow_weak_reward_flag_is_the_config_setting():
    from pipelines.__main__ import parse_cli

    args = parse_cli(["ppo", "--config", "configs/tiny.yaml", "ppo.kl_coef=0.1", "--allow-weak-reward"])
    assert args.overrides == ["ppo.kl_coef=0.1", "ppo.allow_weak_reward=true"]
    assert parse_cli(["ppo"]).overrides == []
