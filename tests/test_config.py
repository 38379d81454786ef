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


@pytest.mark.parametrize("name", ["demo.yaml", "tiny.yaml", "tldr_pythia.yaml"])
def test_shipped_configs_validate(name):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "configs" / name
    cfg = configio.load(ExperimentConfig, path)
    assert cfg.run.name == name.removesuffix(".yaml")


def test_gold_control_is_refused_without_the_simulated_world(tmp_path):
    path = write(tmp_path, "real.yaml", "scrape:\n  source: reddit\nrl:\n  gold_control: true\n")
    with pytest.raises(configio.ConfigError) as err:
        configio.load(ExperimentConfig, path)
    assert "rl.gold_control" in str(err.value) and "sim" in str(err.value)
