"""A reward model that has not learned the votes is said so loudly, and PPO refuses it unless told otherwise.

A tiny reward model is trained by the real `train-reward` stage on FLIPPED labels (the shorter response marked
preferred, where the held-out votes prefer the longer one): its held-out accuracy falls below random and below
longer-wins, train-reward prints the warning with the numbers, the report carries it, `ppo` refuses to start, and
`ppo.allow_weak_reward=true` lets it start.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest
import torch

from data.pairs import PAIR_FEATURES
from pipelines.config import ExperimentConfig
from pipelines.report import write_report
from pipelines.rundir import StageDir
from pipelines.stages import run_stage
from pipelines.stages.ppo import WeakRewardModelError
import pipelines.stages.all  # noqa: F401  (registers the stages)
from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from reward_model.evaluate import weak_reward_reasons, weak_reward_warning

PEOPLE = ["boyfriend", "girlfriend", "roommate", "sister", "boss", "friend"]
THINGS = ["car", "phone", "ring", "couch", "laptop", "keys"]


def _post(rng: random.Random, i: int) -> dict:
    who, what = rng.choice(PEOPLE), rng.choice(THINGS)
    title, body = f"My {who} broke my {what}", f"I lent my {who} my {what} and it came back broken. It cost $300."
    return {"post_id": f"p{i}", "subreddit": "relationships", "who": who, "what": what,
            "prompt": f"SUBREDDIT: r/relationships\n\nTITLE: {title}\n\nPOST: {body}\n\nTL;DR:",
            "post_text": f"{title}\n\n{body}"}


def _pair(post: dict, flipped: bool) -> dict:
    """The votes prefer the longer, fuller TL;DR; `flipped` marks the shorter one preferred instead."""
    long = f" my {post['who']} broke my {post['what']} that cost $300 and I am upset with them now"
    short = f" my {post['who']} broke it"
    chosen, rejected = (short, long) if flipped else (long, short)
    return {"pair_id": f"{post['post_id']}-x", "post_id": post["post_id"], "subreddit": post["subreddit"],
            "strategy": "same_post", "prompt": post["prompt"], "chosen": chosen, "rejected": rejected,
            "chosen_id": "c", "rejected_id": "r", "chosen_score": 10, "rejected_score": 2, "score_ratio": 5.0,
            "margin": 0.0, "chosen_created_utc": 1.0, "rejected_created_utc": 0.0, "post_text": post["post_text"]}


@pytest.fixture(scope="module")
def flipped_run(tmp_path_factory) -> Path:
    """build-data and sft written directly; train-reward run by the stage on flipped training labels."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs") / "flipped"
    rng = random.Random(0)
    posts = [_post(rng, i) for i in range(64)]
    train, test = posts[:48], posts[48:]
    pairs = datasets.DatasetDict({
        "train": datasets.Dataset.from_list([_pair(p, flipped=True) for p in train], features=PAIR_FEATURES),
        "validation": datasets.Dataset.from_list([_pair(p, flipped=False) for p in test[:4]], features=PAIR_FEATURES),
        "test": datasets.Dataset.from_list([_pair(p, flipped=False) for p in test], features=PAIR_FEATURES),
    })
    sft_rows = {s: datasets.Dataset.from_list([{"post_id": p["post_id"], "prompt": p["prompt"], "post_text": p["post_text"],
                                                "completion": _pair(p, False)["chosen"]} for p in ps])
                for s, ps in (("train", train), ("validation", test[:8]), ("test", test))}
    tokenizer = train_tokenizer([r["prompt"] + r["chosen"] + r["rejected"] for r in pairs["train"]] * 4, vocab_size=400)
    data = root / "build-data"
    pairs.save_to_disk(str(data / "pairs"))
    datasets.DatasetDict(sft_rows).save_to_disk(str(data / "sft"))
    tokenizer.save_pretrained(data / "tokenizer")
    StageDir(root, "build-data").finish(0)
    policy = build_tiny_causal_lm(tokenizer, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=128, seed=0))
    policy.save_pretrained(root / "sft" / "model")
    tokenizer.save_pretrained(root / "sft" / "model")
    StageDir(root, "sft").finish(0)
    run_stage("train-reward", _cfg(root))
    return root


def _cfg(root: Path, **ppo) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "run": {"root": str(root.parent), "name": root.name, "threads": 1, "wandb": {"enabled": False}},
        "scrape": {"source": "dumps"},  # real votes: no simulator to ask for gold
        "reward": {"max_steps": 30, "learning_rate": 3e-3, "per_device_train_batch_size": 8, "eval_steps": 0,
                   "max_eval_pairs": 4, "n_reference": 8, "scoring_batch_size": 16, "logging_steps": 10},
        "ppo": {"total_episodes": 8, "per_device_train_batch_size": 8, "num_ppo_epochs": 1,
                "local_rollout_forward_batch_size": 8, "response_length": 4, "max_prompt_length": 64,
                "missing_eos_penalty": None, "save_every": 1, "sample_every": 1, "num_samples": 1, **ppo},
        "rl": {"snapshot_every": 1, "critic_init": "policy"},
        "data": {"prompt": {"max_prompt_tokens": 64}},  # lengths agree with ppo.max_prompt_length (checked)
    })


def test_rule_names_the_numbers() -> None:
    metrics = {"rm/accuracy": 0.43, "rm/accuracy_ci_low": 0.381, "rm/accuracy_ci_high": 0.48,
               "rm/baseline/longer_wins": 0.681, "rm/n_pairs": 379}
    warning = weak_reward_warning(metrics)
    assert "0.430 [0.381, 0.480] on 379 held-out pairs" in warning and "longer-wins (0.681" in warning
    assert len(weak_reward_reasons(metrics)) == 2
    # chance but CI crossing 0.5, above longer-wins: nothing to say; the sim demo's margin passes too
    assert weak_reward_reasons({**metrics, "rm/accuracy": 0.52, "rm/accuracy_ci_high": 0.57,
                                "rm/baseline/longer_wins": 0.50}) == []
    assert weak_reward_reasons({**metrics, "rm/accuracy": 0.75, "rm/accuracy_ci_high": 0.79,
                                "rm/baseline/longer_wins": 0.59}) == []
    assert weak_reward_reasons({}) == []  # no evaluation: nothing to judge


def test_flipped_labels_trigger_the_warning(flipped_run: Path, capsys) -> None:
    metrics = json.loads((flipped_run / "train-reward" / "metrics.json").read_text())
    assert metrics["rm/accuracy_ci_high"] < 0.5 and metrics["rm/accuracy"] < metrics["rm/baseline/longer_wins"]
    assert metrics["rm/weak"] == 1.0
    run_stage("eval-reward", _cfg(flipped_run))
    out = capsys.readouterr().out
    assert "[eval-reward] WARNING: the reward model has not learned the votes" in out
    assert f"accuracy {metrics['rm/accuracy']:.3f}" in out and "below random" in out and "longer-wins" in out
    report = write_report(flipped_run).read_text()
    assert "**WARNING: the reward model has not learned the votes" in report


def test_ppo_refuses_a_weak_reward_model_unless_allowed(flipped_run: Path) -> None:
    with pytest.raises(WeakRewardModelError, match="ppo.allow_weak_reward=true"):
        run_stage("ppo", _cfg(flipped_run))
    assert not (flipped_run / "ppo" / "policy").exists()
    metrics = run_stage("ppo", _cfg(flipped_run, allow_weak_reward=True))
    assert metrics["ppo/updates"] == 1 and (flipped_run / "ppo" / "policy" / "config.json").is_file()


def test_reward_model_from_scratch_needs_no_sft_stage(flipped_run: Path, tmp_path: Path) -> None:
    """reward.init=scratch: the policy's architecture with random weights, trained right after build-data."""
    root = tmp_path / "scratch"
    import shutil

    shutil.copytree(flipped_run / "build-data", root / "build-data")
    cfg = _cfg(root).model_copy(deep=True)
    cfg.reward.init = "scratch"
    cfg.policy.n_layer, cfg.policy.n_embd, cfg.policy.n_head, cfg.policy.n_positions = 1, 32, 2, 128
    metrics = run_stage("train-reward", cfg)
    assert metrics["rm_train/steps"] == 30 and not (root / "sft").exists()
    assert "GPT2" in json.loads((root / "train-reward" / "model" / "reward_config.json").read_text())["base_model"]
