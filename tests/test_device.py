"""The device rule (`policy.device`, `run.device` / `run.dtype`): resolved once, and every model a stage builds
goes where it says. The stages themselves are audited where they run (tests/test_stage_rl.py,
tests/test_stage_steer.py, tests/test_end_to_end.py: `ForwardAudit` finds no model that ran off the rule)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.config import ExperimentConfig
from pipelines.rundir import StageDir
from pipelines.stages import Context
from pipelines.stages.ppo import ppo_models
from pipelines.stages.train import load_scorer
from pipelines.tracking import Tracker
from policy.device import PLACED, ForwardAudit, Placement, place, resolve_placement
from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from reward_model.model import build_reward_model
from reward_model.scoring import RewardFileConfig


def test_resolve_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = resolve_placement("auto", "bfloat16")
    assert cpu.device == torch.device("cpu") and cpu.frozen_dtype == torch.float32 and "CUDA only" in cpu.note
    with pytest.raises(ValueError, match=r"run.device=cuda.*no GPU"):
        resolve_placement("cuda")
    with pytest.raises(ValueError, match="run.device='tpu'"):
        resolve_placement("tpu")  # type: ignore[arg-type]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process of a launch: its own GPU
    gpu = resolve_placement("auto", "bfloat16")
    assert gpu.device == torch.device("cuda", 1) and gpu.frozen_dtype == torch.bfloat16 and not gpu.note
    assert resolve_placement("cpu", "bfloat16").device == torch.device("cpu")  # cpu wins over a visible GPU


def test_config_fields_reach_the_rule() -> None:
    cfg = ExperimentConfig.model_validate({"run": {"device": "cpu", "dtype": "bfloat16"}})
    assert resolve_placement(cfg.run.device, cfg.run.dtype).device.type == "cpu"
    with pytest.raises(ValueError, match="run.device"):
        ExperimentConfig.model_validate({"run": {"device": "gpu"}})


def _tiny(tmp_path: Path):
    tok = train_tokenizer(["the cat sat on a mat", "a dog ran in the park"] * 20, vocab_size=300)
    return tok, build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=16, n_head=2, n_positions=32))


def test_audit_flags_a_model_that_was_never_placed(tmp_path: Path) -> None:
    tok, left_behind = _tiny(tmp_path)
    placed = place(build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=16, n_head=2, n_positions=32)), "cpu")
    ids = torch.tensor([[3, 4, 5]])
    with ForwardAudit() as audit:
        placed(input_ids=ids)
    assert audit.problems("cpu") == []
    with ForwardAudit() as audit:
        placed(input_ids=ids)
        left_behind(input_ids=ids)
    problems = audit.problems("cpu")
    assert problems[0].startswith("GPT2LMHeadModel on cpu") and all("never placed" in p for p in problems)
    assert len(problems) == 2  # the LM and its GPT2Model backbone; the placed model is not listed
    assert audit.problems("meta")  # and a placed model on the wrong device is flagged too


def test_stage_builders_put_every_model_where_the_rule_says(tmp_path: Path) -> None:
    """PPO's policy, reference and value model and the reward scorer, built by the stage's own functions under
    a placement on the `meta` device in bf16: each lands there (trained ones in float32, frozen ones in bf16)."""
    tok, policy = _tiny(tmp_path)
    policy.save_pretrained(tmp_path / "sft")
    tok.save_pretrained(tmp_path / "sft")
    rm = build_reward_model(policy.config, tok)
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    RewardFileConfig().save(tmp_path / "rm")
    cfg = ExperimentConfig.model_validate({"run": {"root": str(tmp_path), "wandb": {"enabled": False}}})
    sd = StageDir(tmp_path / "run", "ppo")
    sd.path.mkdir(parents=True)
    with Tracker(sd.path, "ppo", {}, group="t", enabled=False) as tracker:
        ctx = Context(cfg, sd, tracker, placement=Placement(torch.device("meta"), torch.bfloat16))
        models = [*ppo_models(ctx, tmp_path / "sft", tmp_path / "rm"), load_scorer(ctx, tmp_path / "rm").model]
    dtypes = [torch.float32, torch.float32, torch.float32, torch.bfloat16]  # policy, reference, value; scorer
    for model, dtype in zip(models, dtypes):
        assert {p.device.type for p in model.parameters()} == {"meta"} and model in PLACED
        assert {p.dtype for p in model.parameters()} == {dtype}
    assert set(ctx.models) == {"policy", "reference policy", "value model", "reward model (scoring)"}
    assert ctx.models["reward model (scoring)"].startswith("meta bfloat16")
