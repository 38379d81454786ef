"""PPO on a tiny GPT-2: it learns a trivially learnable reward, resumes exactly, and stops on NaN."""

from __future__ import annotations

import copy
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2ForSequenceClassification

from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from policy.ppo import PPODivergedError, _update_indices, latest_checkpoint, lr_multipliers, train_ppo
from policy.ppo_config import LoraSpec, PPOConfig, derive_sizes
from policy.value_model import build_value_model
from tests.launch import REPO, torchrun_two_cpus

WORDS = "the cat sat on a mat while dogs ran in parks and birds flew over trees near rivers".split()


def word_tokenizer():
    """A BPE over WORDS; a plain function too, for the multi-process scripts in tests/scripts/."""
    rnd = random.Random(0)
    return train_tokenizer([" ".join(rnd.choice(WORDS) for _ in range(20)) for _ in range(300)], vocab_size=300)


def word_prompts() -> list[str]:
    rnd = random.Random(1)
    return [" ".join(rnd.choice(WORDS) for _ in range(5)) + " TL;DR:" for _ in range(64)]


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer()


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return word_prompts()


def make_models(tokenizer, seed: int = 0):
    torch.set_num_threads(1)
    policy = build_tiny_causal_lm(tokenizer, ModelSpec(n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=seed))
    return policy, copy.deepcopy(policy), build_value_model(policy)


def count_e(prompts: list[str], responses: list[str]) -> list[float]:
    """Trivially learnable: a quarter point per letter 'e' in the response."""
    return [r.count("e") / 4 for r in responses]


def small_cfg(**overrides) -> PPOConfig:
    base = dict(
        total_episodes=16 * 20, per_device_train_batch_size=16, num_ppo_epochs=4, local_rollout_forward_batch_size=16,
        response_length=8, temperature=1.0, missing_eos_penalty=None, learning_rate=1e-2, kl_coef=0.01,
        save_every=100, sample_every=5, num_samples=2,
    )
    return PPOConfig(**(base | overrides))


def test_ppo_learns_token_count(tokenizer, prompts, tmp_path: Path) -> None:
    policy, ref, value = make_models(tokenizer)
    init = {k: v.clone() for k, v in policy.state_dict().items()}
    ref_init = {k: v.clone() for k, v in ref.state_dict().items()}
    logged: list[tuple[int, dict]] = []
    handed: list[list[dict]] = []
    result = train_ppo(
        policy, ref, value, tokenizer, prompts, count_e, small_cfg(), tmp_path,
        log=lambda m, s: logged.append((s, m)), gold_fn=count_e, on_samples=lambda rows, s: handed.append(rows),
    )
    scores = [m["objective/scores"] for m in result.history]
    assert len(scores) == 20 and [s for s, _ in logged] == list(range(1, 21))
    assert sum(scores[-3:]) / 3 > scores[0] + 1.0, scores  # from ~0.2 to well above 1
    for key in ("objective/kl", "objective/entropy", "objective/non_score_reward", "objective/gold", "ppo/policy/clipfrac_avg",
                "ppo/policy/approxkl_avg", "ppo/loss/value", "ppo/val/explained_variance", "ppo/val/vpred",
                "objective/response_length", "objective/no_eos_rate", "objective/beta", "ppo/lr", "time/generate",
                "time/score", "time/train"):
        assert key in result.history[-1] and math.isfinite(result.history[-1][key]), key
    assert result.history[-1]["objective/kl"] > 0.1  # the policy moved away from the reference
    assert result.history[0]["ppo/lr"] > result.history[-1]["ppo/lr"]  # linear decay
    assert [rows[0]["step"] for rows in handed] == [1, 5, 10, 15, 20] and "gold" in handed[0][0]
    # The policy changed, the reference did not; the outputs load the ordinary way.
    assert any(not torch.equal(init[k], v) for k, v in policy.state_dict().items())
    assert all(torch.equal(ref_init[k], v) for k, v in ref.state_dict().items())
    reloaded = AutoModelForCausalLM.from_pretrained(result.policy_dir)
    torch.testing.assert_close(reloaded.state_dict()["transformer.wte.weight"], policy.state_dict()["transformer.wte.weight"])
    assert (result.value_model_dir / "config.json").exists()
    assert latest_checkpoint(tmp_path).name == "step-0000020"


def test_resume_reproduces_next_update(tokenizer, prompts, tmp_path: Path) -> None:
    cfg = small_cfg(total_episodes=8 * 3, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                    num_ppo_epochs=2, local_rollout_forward_batch_size=4, save_every=2, learning_rate=3e-3)
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    policy, ref, value = make_models(tokenizer)
    full = train_ppo(policy, ref, value, tokenizer, prompts, count_e, cfg, full_dir)
    assert len(full.history) == 3
    # Interrupted run: only the update-2 checkpoint survives; a fresh process resumes from it.
    shutil.copytree(full_dir / "checkpoints" / "step-0000002", resumed_dir / "checkpoints" / "step-0000002")
    policy2, ref2, value2 = make_models(tokenizer)
    resumed = train_ppo(policy2, ref2, value2, tokenizer, prompts, count_e, cfg, resumed_dir)
    assert len(resumed.history) == 1
    for key, value_full in full.history[2].items():
        if not key.startswith(("time/", "episodes_per_second")):
            assert resumed.history[0][key] == pytest.approx(value_full, rel=1e-5, abs=1e-6), key
    for (name, a), b in zip(policy.state_dict().items(), policy2.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    for a, b in zip(value.state_dict().values(), value2.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_nan_guard_stops_and_keeps_checkpoint(tokenizer, prompts, tmp_path: Path) -> None:
    calls = {"n": 0}

    def breaks_at_third_update(p: list[str], r: list[str]) -> torch.Tensor:
        calls["n"] += 1
        return torch.full((len(r),), float("nan") if calls["n"] == 3 else 1.0)

    cfg = small_cfg(total_episodes=8 * 4, per_device_train_batch_size=8, save_every=2, num_ppo_epochs=1)
    policy, ref, value = make_models(tokenizer)
    with pytest.raises(PPODivergedError, match=r"update 3.*non-finite.*step-0000002") as err:
        train_ppo(policy, ref, value, tokenizer, prompts, breaks_at_third_update, cfg, tmp_path)
    assert err.value.last_checkpoint == tmp_path / "checkpoints" / "step-0000002"
    assert latest_checkpoint(tmp_path) == err.value.last_checkpoint
    assert not (tmp_path / "policy").exists()


def test_options_k3_adaptive_kl_whitening_penalty(tokenizer, prompts, tmp_path: Path) -> None:
    cfg = small_cfg(total_episodes=16 * 3, num_mini_batches=2, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                    kl_estimator="k3", target_kl=0.01, kl_horizon=100, kl_coef=0.1, whiten_rewards=True,
                    missing_eos_penalty=-3.0, reuse_sampling_logprobs=True, max_grad_norm=1.0, lr_schedule="constant")
    policy, ref, value = make_models(tokenizer)
    result = train_ppo(policy, ref, value, tokenizer, prompts, count_e, cfg, tmp_path)
    first, second, last = result.history
    # A random policy almost never samples EOS in 8 tokens: those responses score the penalty.
    assert first["objective/no_eos_rate"] > 0.5
    assert first["objective/scores"] < first["objective/raw_scores"]
    assert all(m["objective/kl"] >= 0.0 for m in result.history)  # k3 is non-negative per token
    # Update 1 has KL 0 (policy == reference): beta shrinks by 1 - 0.2 * 16 / 100; then KL > target: it grows.
    assert second["objective/beta"] == pytest.approx(0.1 * (1 - 0.2 * 16 / 100))
    assert second["objective/kl"] > 0.01 and last["objective/beta"] > second["objective/beta"]
    assert first["ppo/lr"] == last["ppo/lr"]


def test_lora_policy_trains_and_saves_merged(tokenizer, prompts, tmp_path: Path) -> None:
    policy, ref, value = make_models(tokenizer)
    init_wte = policy.transformer.wte.weight.detach().clone()
    cfg = small_cfg(total_episodes=16 * 2, lora=LoraSpec(r=4, alpha=8, target_modules=["c_attn"]), num_ppo_epochs=2)
    result = train_ppo(policy, ref, value, tokenizer, prompts, count_e, cfg, tmp_path)
    merged = AutoModelForCausalLM.from_pretrained(result.policy_dir)
    torch.testing.assert_close(merged.transformer.wte.weight, init_wte)  # frozen base weights
    assert not torch.allclose(merged.transformer.h[0].attn.c_attn.weight, ref.transformer.h[0].attn.c_attn.weight)


def test_value_model_from_reward_model_dir(tokenizer, tmp_path: Path) -> None:
    policy, _, _ = make_models(tokenizer)
    rm = GPT2ForSequenceClassification(policy.config.__class__(**(policy.config.to_dict() | {"num_labels": 1})))
    rm.save_pretrained(tmp_path / "rm")
    value = build_value_model(policy, tmp_path / "rm")
    torch.testing.assert_close(value.score.weight, rm.score.weight)
    fresh = build_value_model(policy)
    assert torch.count_nonzero(fresh.score.weight) == 0
    torch.testing.assert_close(fresh.transformer.wte.weight, policy.transformer.wte.weight)


def test_derived_sizes_and_errors() -> None:
    cfg = PPOConfig(total_episodes=1000, per_device_train_batch_size=4, gradient_accumulation_steps=2, num_mini_batches=4)
    sizes = derive_sizes(cfg, world_size=2)
    assert (sizes.local_mini_batch_size, sizes.local_batch_size, sizes.batch_size, sizes.num_updates) == (8, 32, 64, 15)
    with pytest.raises(ValueError, match="total_episodes=10"):
        derive_sizes(PPOConfig(total_episodes=10, per_device_train_batch_size=16), world_size=1)
    with pytest.raises(ValueError, match="extra"):
        PPOConfig(kl_coeff=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="critic_warmup_updates=2 leaves no policy update out of 2"):
        derive_sizes(PPOConfig(total_episodes=32, per_device_train_batch_size=16, critic_warmup_updates=2), world_size=1)
    with pytest.raises(ValueError, match="samples_per_prompt=3 does not divide the 16 rollouts"):
        derive_sizes(PPOConfig(total_episodes=32, per_device_train_batch_size=16, samples_per_prompt=3), world_size=1)
    with pytest.raises(ValueError, match="score_baseline=leave_one_out needs ppo.samples_per_prompt >= 2"):
        PPOConfig(score_baseline="leave_one_out")


def test_grouped_prompt_stream_is_shared_by_processes_and_resumable() -> None:
    """Each prompt fills samples_per_prompt consecutive rows; two processes read disjoint consecutive prompts
    of one stream, the same prompts one process reads with twice the batch."""
    cfg = PPOConfig(total_episodes=64, per_device_train_batch_size=8, samples_per_prompt=4)
    two = derive_sizes(cfg, world_size=2)
    one = derive_sizes(cfg.model_copy(update={"per_device_train_batch_size": 16}), world_size=1)
    for update in (1, 2, 5):
        rows = [i for p in range(2) for i in _update_indices(update, two, 50, seed=3, process_index=p, samples_per_prompt=4)]
        assert rows == _update_indices(update, one, 50, seed=3, process_index=0, samples_per_prompt=4)
        groups = [rows[g : g + 4] for g in range(0, len(rows), 4)]
        assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) == len(groups)
    # Without grouping the same stream gives one row per prompt: the grouped update u reads its prompts from there.
    flat = [i for u in (1, 2) for i in _update_indices(u, one, 50, seed=3, process_index=0)]
    grouped = _update_indices(1, one, 50, seed=3, process_index=0, samples_per_prompt=4)
    assert grouped[::4] == flat[:4]


def test_lr_multipliers_with_critic_warmup() -> None:
    policy, value = lr_multipliers(PPOConfig(critic_warmup_updates=2), num_updates=6)
    assert [policy(k) for k in range(6)] == pytest.approx([0, 0, 1, 0.75, 0.5, 0.25])
    assert [value(k) for k in range(6)] == pytest.approx([1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    policy, value = lr_multipliers(PPOConfig(critic_warmup_updates=1, lr_schedule="constant"), num_updates=3)
    assert [policy(k) for k in range(3)] == [0, 1, 1] and [value(k) for k in range(3)] == [1, 1, 1]


def test_critic_warmup_trains_only_the_value_model(tokenizer, prompts, tmp_path: Path) -> None:
    """During the warm-up the policy is not stepped (its logged LR is 0) while the critic is, at its own rate."""
    policy, ref, value = make_models(tokenizer)
    policy_init = {k: v.clone() for k, v in policy.state_dict().items()}
    value_init = {k: v.clone() for k, v in value.state_dict().items()}
    seen: dict[int, tuple[bool, bool]] = {}

    def check(metrics: dict, step: int) -> None:
        policy_moved = any(not torch.equal(policy_init[k], v) for k, v in policy.state_dict().items())
        value_moved = any(not torch.equal(value_init[k], v) for k, v in value.state_dict().items())
        seen[step] = (policy_moved, value_moved)

    cfg = small_cfg(total_episodes=16 * 3, critic_warmup_updates=2, value_learning_rate=5e-2, num_ppo_epochs=2)
    result = train_ppo(policy, ref, value, tokenizer, prompts, count_e, cfg, tmp_path, log=check)
    assert seen == {1: (False, True), 2: (False, True), 3: (True, True)}
    assert [m["ppo/lr"] for m in result.history] == [0.0, 0.0, pytest.approx(1e-2)]
    assert [m["ppo/value_lr"] for m in result.history] == pytest.approx([5e-2, 5e-2 * 2 / 3, 5e-2 / 3])
    assert result.history[0]["objective/kl"] == 0.0 and result.history[2]["objective/kl"] == 0.0  # policy == ref until update 3


def test_leave_one_out_baseline_learns_and_cancels_a_constant_reward(tokenizer, prompts, tmp_path: Path) -> None:
    """Four samples per prompt share a prompt; the centred score still teaches the token count, and a reward
    that is the same for every sample of a prompt (here: a prompt-dependent constant) teaches nothing at all."""
    cfg = small_cfg(samples_per_prompt=4, score_baseline="leave_one_out", num_samples=8, sample_every=1)
    policy, ref, value = make_models(tokenizer)
    handed: list[list[dict]] = []
    result = train_ppo(policy, ref, value, tokenizer, prompts, count_e, cfg, tmp_path / "learn",
                       on_samples=lambda rows, s: handed.append(rows))
    scores = [m["objective/scores"] for m in result.history]
    assert sum(scores[-3:]) / 3 > scores[0] + 1.0, scores
    assert all(m["objective/terminal_reward_std"] > 0 for m in result.history)
    first = [r["prompt"] for r in handed[0]]
    assert first[:4] == [first[0]] * 4 and first[4:] == [first[4]] * 4 and first[0] != first[4]

    def per_prompt_constant(p: list[str], r: list[str]) -> list[float]:
        return [float(len(x)) for x in p]

    policy, ref, value = make_models(tokenizer)
    init = {k: v.clone() for k, v in policy.state_dict().items()}
    flat = small_cfg(total_episodes=16 * 2, samples_per_prompt=4, kl_coef=0.0)
    centred = flat.model_copy(update={"score_baseline": "leave_one_out"})
    train_ppo(policy, ref, value, tokenizer, prompts, per_prompt_constant, centred, tmp_path / "centred")
    assert all(torch.equal(init[k], v) for k, v in policy.state_dict().items())
    policy, ref, value = make_models(tokenizer)
    train_ppo(policy, ref, value, tokenizer, prompts, per_prompt_constant, flat, tmp_path / "raw")
    assert any(not torch.equal(init[k], v) for k, v in policy.state_dict().items())


def test_data_parallel_ranks_split_prompts_and_stay_in_sync(tmp_path: Path) -> None:
    """Two CPU processes (torchrun, gloo), as `accelerate launch` runs PPO on several GPUs: each rank rolls out
    its own prompts, the all-reduced gradients keep policy and value identical on both ranks, and the logged
    metrics are the process average, the same on every rank (so the NaN guard stops both together)."""
    torchrun_two_cpus(str(REPO / "tests/scripts/ddp_ppo.py"), str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert len(r0["prompts"]) == len(r1["prompts"]) == 3 * 8 and r0["prompts"] != r1["prompts"]
    for part in ("policy", "value"):
        assert all(torch.equal(r0[part][k], r1[part][k]) for k in r0[part]), part
    assert any(not torch.equal(r0["init"][k], r0["policy"][k]) for k in r0["init"])  # and they did train
    assert len(r0["history"]) == 3
    for key in ("objective/scores", "objective/kl", "ppo/loss/value", "ppo/policy/approxkl_avg"):
        assert [m[key] for m in r0["history"]] == [m[key] for m in r1["history"]], key
    assert (tmp_path / "ppo" / "policy" / "config.json").is_file()


def test_deepspeed_zero2_trains_like_plain_ppo_and_resumes_exactly(tmp_path: Path) -> None:
    """PPO under `accelerate launch` with DeepSpeed ZeRO-2 (one CPU process, fp32), as configs/accelerate/
    deepspeed_zero2.yaml runs it on GPUs: DeepSpeed gets PPO's micro-batch, accumulation and clipping (not
    accelerate's 'auto' guesses and its 1.0 clip), trains to the same weights as plain PPO, and a run resumed
    from its update-2 checkpoint (DeepSpeed's own checkpoint format) ends where the uninterrupted one did."""
    pytest.importorskip("deepspeed")
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = str(REPO / "tests/scripts/deepspeed_ppo.py")
    # The shipped config, with one process and fp32 for a CPU (as bench/gpu_launch.sh checks itself).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(REPO / "configs/accelerate/deepspeed_zero2.yaml"), "--num_processes", "1", "--mixed_precision", "no"]

    def run(cmd: list[str]) -> dict:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return torch.load(Path(cmd[-1]) / "result.pt")

    zero2 = run([*launch, script, str(tmp_path / "zero2")])
    plain = run([sys.executable, script, str(tmp_path / "plain")])
    assert zero2["distributed_type"] == "DistributedType.DEEPSPEED" and plain["distributed_type"] == "DistributedType.NO"
    ds = zero2["deepspeed_config"]
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (4, 2, 8)
    assert ds["gradient_clipping"] == 0.5 and ds["zero_optimization"]["stage"] == 2
    assert len(zero2["history"]) == len(plain["history"]) == 3
    for key in ("objective/scores", "objective/kl", "ppo/loss/value", "ppo/policy/approxkl_avg", "ppo/lr"):
        assert [m[key] for m in zero2["history"]] == pytest.approx([m[key] for m in plain["history"]], abs=1e-4), key
    for part in ("policy", "value"):
        for name, weight in zero2[part].items():
            torch.testing.assert_close(weight, plain[part][name], rtol=1e-4, atol=1e-5, msg=f"{part} {name}")
    assert any(not torch.equal(v, zero2["policy"][k]) for k, v in zero2["init"].items())  # and it trained

    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "zero2" / "ppo" / "checkpoints" / "step-0000002",
                    resumed_dir / "ppo" / "checkpoints" / "step-0000002")
    resumed = run([*launch, script, str(resumed_dir)])
    assert len(resumed["history"]) == 1
    for key, value in zero2["history"][2].items():
        if not key.startswith(("time/", "episodes_per_second")):
            assert resumed["history"][0][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for part in ("policy", "value"):
        assert all(torch.equal(resumed[part][k], zero2[part][k]) for k in zero2[part]), part


def test_deepspeed_zero3_is_refused_with_the_config_to_use() -> None:
    from types import SimpleNamespace

    from policy.ppo import configure_deepspeed

    def accelerator(stage: int) -> SimpleNamespace:
        plugin = SimpleNamespace(deepspeed_config={"zero_optimization": {"stage": stage}})
        return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin), num_processes=2)

    with pytest.raises(ValueError, match=r"ZeRO-3.*deepspeed_zero2\.yaml"):
        configure_deepspeed(accelerator(3), small_cfg())
    zero2 = accelerator(2)
    configure_deepspeed(zero2, small_cfg(per_device_train_batch_size=4, gradient_accumulation_steps=2))
    ds = zero2.state.deepspeed_plugin.deepspeed_config
    assert (ds["train_batch_size"], ds["gradient_clipping"]) == (4 * 2 * 2, 0.0)  # no ppo.max_grad_norm: no clip


@pytest.mark.parametrize("bf16, expected", [(None, "bf16"), (False, "no"), (True, "bf16")])
def test_bf16_unset_keeps_the_launch_mixed_precision(bf16, expected, monkeypatch, tmp_path: Path) -> None:
    """An accelerate launch config (or ACCELERATE_MIXED_PRECISION) says bf16: `ppo.bf16` unset keeps it, an explicit
    value wins. Read off the Accelerator that train_ppo itself builds (stopped right after)."""
    import policy.ppo as ppo_module
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    class Built(Exception):
        pass

    seen: list[str] = []

    class Spy(Accelerator):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            seen.append(self.mixed_precision)
            raise Built

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setattr(ppo_module, "Accelerator", Spy)
    AcceleratorState._reset_state(reset_partial_state=True)  # a state built by an earlier test would win
    try:
        with pytest.raises(Built):
            train_ppo(None, None, None, None, [], count_e, small_cfg(bf16=bf16), tmp_path, device="cpu")
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert seen == [expected]


def test_sizes_derived_by_the_caller_are_used_and_checked(tokenizer, prompts, tmp_path: Path) -> None:
    policy, ref, value = make_models(tokenizer)
    cfg = small_cfg(total_episodes=32)
    with pytest.raises(ValueError, match="derived for 2 processes, but this launch runs 1"):
        train_ppo(policy, ref, value, tokenizer, prompts, count_e, cfg, tmp_path, sizes=derive_sizes(cfg, 2))
    sizes = derive_sizes(cfg, 1)
    result = train_ppo(policy, ref, value, tokenizer, prompts, count_e, cfg, tmp_path, sizes=sizes)
    assert result.num_updates == len(result.history) == sizes.num_updates == 2
