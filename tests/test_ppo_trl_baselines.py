"""TRL 1.16 RLOO / GRPO baselines run on a tiny GPT-2 with our reward wrapped as a callable."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from policy.trl_baselines import TRLBaselineConfig, reward_callable, train_trl_baseline


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
    cfg = TRLBaselineConfig(algo=algo, max_steps=2, per_device_train_batch_size=4, num_generations=2,
                            max_completion_length=6, learning_rate=1e-3, missing_eos_penalty=None)
    history = train_trl_baseline(policy, tok, prompts, lambda p, r: [x.count("e") + 0.1 * len(x) for x in r], cfg,
                                 tmp_path, log=lambda m, s: logged.append(s))
    assert any("reward" in h for h in history) and logged and max(logged) == 2
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    assert any(not torch.equal(init[k], v) for k, v in trained.state_dict().items() if k in init)
