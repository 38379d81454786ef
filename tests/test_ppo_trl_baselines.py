"""TRL 1.16 RLOO / GRPO baselines on a tiny GPT-2 with our reward wrapped as a callable: they run, train on the
log-probs their sampler used, and share PPO's budget and sampling settings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from pipelines.config import ExperimentConfig
from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from policy.ppo_config import PPOConfig
from policy.rl_utils import truncate_after_eos
from policy.sampling import left_pad_prompts
from policy.trl_baselines import (
    TRLBaselineConfig,
    baseline_steps,
    build_trl_trainer,
    inherit_from_ppo,
    reward_callable,
    train_trl_baseline,
)

WORDS = "the cat sat on a mat while dogs ran in parks".split()


def _tiny(n_positions: int = 64):
    rnd = random.Random(0)
    tok = train_tokenizer([" ".join(rnd.choice(WORDS) for _ in range(20)) for _ in range(100)], vocab_size=300)
    return tok, build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=n_positions))


def test_reward_callable_penalizes_missing_eos() -> None:
    fn = reward_callable(lambda p, r: [len(x) for x in r], eos_token_id=0, missing_eos_penalty=-1.0, max_completion_length=3)
    scores = fn(prompts=["a", "b", "c"], completions=["xy", "xyz", "q"], completion_ids=[[5, 0], [5, 6, 7], [4]], extra_column=[1, 2, 3])
    assert scores == [2.0, -1.0, 1.0]  # full length without EOS -> penalty; short without EOS: stopped early, kept


@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_trl_baseline_smoke(algo: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rnd = random.Random(0)
    words = "the cat sat on a mat while dogs ran in parks".split()
    tok = train_tokenizer([" ".join(rnd.choice(words) for _ in range(20)) for _ in range(100)], vocab_size=300)
    policy = build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=64))
    init = {k: v.clone() for k, v in policy.state_dict().items()}
    prompts = [" ".join(rnd.choice(words) for _ in range(4)) + " TL;DR:" for _ in range(16)]
    logged: list[int] = []
    cfg = inherit_from_ppo(TRLBaselineConfig(algo=algo, total_episodes=8, per_device_train_batch_size=4, num_generations=2,
                                             max_completion_length=6, learning_rate=1e-3, missing_eos_penalty=None),
                           PPOConfig())  # 2 steps of 4 completions
    history = train_trl_baseline(policy, tok, prompts, lambda p, r: [x.count("e") + 0.1 * len(x) for x in r], cfg,
                                 tmp_path, log=lambda m, s: logged.append(s))
    assert any("reward" in h for h in history) and logged and max(logged) == 2
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    assert any(not torch.equal(init[k], v) for k, v in trained.state_dict().items() if k in init)


@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_trl_trains_on_the_log_probs_its_sampler_used(algo: str, tmp_path: Path) -> None:
    """TRL 1.16 scores completions from input_ids + attention_mask only: on a left-padded prompt GPT-2 then read
    arange positions that `generate` did not use (about a nat apart). The trainer we build must give, for the
    policy and its reference, the log-probs of the logits `generate` sampled from, on padded rows too."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok, policy = _tiny()
    rnd = random.Random(1)
    prompts = [" ".join(rnd.choice(WORDS) for _ in range(n)) + " TL;DR:" for n in (1, 3, 6, 12)]  # 3 of 4 padded
    cfg = TRLBaselineConfig(algo=algo, total_episodes=4, per_device_train_batch_size=4, num_generations=2,
                            max_completion_length=8, max_prompt_length=64, temperature=0.7, beta=0.05, seed=0,
                            bf16=False)
    trainer = build_trl_trainer(policy, tok, prompts, lambda p, r: [0.0] * len(r), cfg, tmp_path)
    ids, mask = left_pad_prompts(tok, prompts)  # [B, Q], as TRL pads prompts for generate
    assert (mask == 0).any(1).sum() == 3
    torch.manual_seed(0)
    with torch.no_grad():
        out = trainer.model.generate(input_ids=ids, attention_mask=mask, generation_config=trainer.generation_config,
                                     output_logits=True, return_dict_in_generate=True)
    completion = out.sequences[:, ids.shape[1]:]  # [B, C]
    _, completion_mask, _ = truncate_after_eos(completion, tok.eos_token_id, tok.pad_token_id)  # [B, C] up to EOS
    logits = torch.stack(out.logits, dim=1).float() / cfg.temperature  # [B, C, V], the sampler's (raw) logits
    sampled = torch.log_softmax(logits, -1).gather(-1, completion[..., None]).squeeze(-1)  # [B, C]
    with torch.no_grad():
        for model in (trainer.model, trainer.ref_model):
            trained, _, _ = trainer._get_per_token_logps_and_entropies(
                model, torch.cat([ids, completion], 1), torch.cat([mask, completion_mask.long()], 1), completion.shape[1])
            gap = ((trained - sampled).abs() * completion_mask).max().item()
            assert gap < 1e-4, f"{algo}: TRL's log-probs differ from the sampler's by {gap:.3f} nats"


def test_baselines_take_ppos_budget_and_sampling_unless_set(tmp_path: Path) -> None:
    cfg = ExperimentConfig.model_validate({
        "ppo": {"total_episodes": 640, "kl_coef": 0.02, "temperature": 0.9, "response_length": 40,
                "max_prompt_length": 300, "seed": 3, "bf16": False},
        "data": {"prompt": {"max_prompt_tokens": 300}},  # lengths agree (checked)
        "rl": {"baselines": [{"algo": "rloo", "per_device_train_batch_size": 16},
                             {"algo": "grpo", "beta": 0.1, "total_episodes": 64, "per_device_train_batch_size": 8}]},
    })
    rloo, grpo = cfg.rl.baselines
    assert (rloo.total_episodes, rloo.beta, rloo.temperature, rloo.max_completion_length, rloo.max_prompt_length,
            rloo.seed, rloo.bf16) == (640, 0.02, 0.9, 40, 300, 3, False)
    assert (grpo.beta, grpo.total_episodes, grpo.temperature) == (0.1, 64, 0.9)  # set: kept
    assert baseline_steps(rloo) == 40 and baseline_steps(rloo, world_size=2) == 20 and baseline_steps(grpo) == 8
    # resolved once, on loading: the saved config shows the values used, and reloading it changes nothing
    saved = cfg.model_dump(mode="json")
    assert saved["rl"]["baselines"][0]["beta"] == 0.02
    assert ExperimentConfig.model_validate(saved).rl.baselines == cfg.rl.baselines
    with pytest.raises(ValueError, match=r"total_episodes=8 is less than one optimizer step of 16"):
        baseline_steps(rloo.model_copy(update={"total_episodes": 8}))
    with pytest.raises(ValueError, match="inherit_from_ppo"):
        build_trl_trainer(tmp_path, None, [], lambda p, r: [], TRLBaselineConfig(), tmp_path)
