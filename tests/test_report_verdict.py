"""The report's "Does RL beat SFT?" verdict is computed from the numbers it quotes: hand-made rows."""

from __future__ import annotations

from pipelines.report import _policy_verdict


def _gain(mean: float, lo: float, hi: float) -> dict:
    return {"mean": mean, "lo": lo, "hi": hi, "p_not_above": 0.5, "prompts": 10}


def _table() -> list[dict]:
    row = {"gold_win_rate": 0.1, "gold_win_ci": [0.05, 0.2], "rm_score": 0.0, "gold": 0.6, "kl": 1.0}
    return [{"method": m, **row} for m in ("SFT", "best-of-4", "PPO step 40", "PPO on gold (control)")]


def _vs_sft(ppo_gold: dict, control_gold: dict) -> dict:
    return {"PPO step 40": {"gold_win": _gain(0.0, -0.02, 0.02), "gold": ppo_gold},
            "PPO on gold (control)": {"gold_win": _gain(0.0, -0.02, 0.02), "gold": control_gold}}


def test_reward_model_is_named_when_only_the_control_gains() -> None:
    text = "\n".join(_policy_verdict(_table(), _vs_sft(_gain(-0.017, -0.031, -0.004), _gain(0.045, 0.033, 0.057))))
    assert "PPO on gold +0.045 [+0.033, +0.057], PPO on the reward model -0.017 [-0.031, -0.004]" in text
    assert "the limit is what the reward model rewards" in text


def test_optimizer_is_named_when_not_even_gold_gains() -> None:
    text = "\n".join(_policy_verdict(_table(), _vs_sft(_gain(0.0, -0.01, 0.01), _gain(0.002, -0.01, 0.015))))
    assert "Even the gold reward does not raise gold clearly" in text
    assert "the limit is what the reward model rewards" not in text


def test_no_bottleneck_line_without_the_paired_comparison() -> None:
    text = "\n".join(_policy_verdict(_table(), None))
    assert "PPO with the same settings against the gold score itself" in text and "Paired gold gain" not in text
