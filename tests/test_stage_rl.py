"""`ppo` then `eval-policy` through `run_stage` on a tiny run directory made here (build-data, sft, train-reward
fixtures written directly): snapshots, resume of a complete stage, the table's schema, plots, baselines."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from pipelines.analysis import gold_parts
from pipelines.config import ExperimentConfig
from pipelines.rundir import StageDir
from pipelines.stages import run_stage
import pipelines.stages.all  # noqa: F401  (registers the stages)
from policy.device import ForwardAudit
from policy.evaluate import ROW_KEYS, HeldOut, Responses
from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from policy.snapshots import PolicySnapshots, list_snapshots
from policy.value_model import critic_init_dir
from reward_model.calibration import wilson_interval
from reward_model.model import build_reward_model
from reward_model.scoring import RewardFileConfig

PEOPLE = ["boyfriend", "girlfriend", "roommate", "sister", "boss", "friend"]
THINGS = ["car", "phone", "ring", "couch", "laptop", "keys"]


def _row(rng: random.Random, i: int) -> dict:
    who, what = rng.choice(PEOPLE), rng.choice(THINGS)
    title = f"My {who} broke my {what}"
    post = f"I (2{i % 10}F) lent my {who} my {what} and it came back broken. It cost $300."
    return {
        "post_id": f"p{i}", "subreddit": "relationships", "score": rng.randint(1, 50), "created_utc": 1.7e9 + i,
        "prompt": f"SUBREDDIT: r/relationships\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:",
        # TL;DRs of three qualities (gold differs): all facts, one fact left out, one fact wrong.
        "completion": [f" my {who} broke my {what} worth $300", f" my {who} broke my {what}",
                       f" my {who} broke my {THINGS[(THINGS.index(what) + 1) % len(THINGS)]} worth $300"][i % 3],
        "post_text": f"{title}\n\n{post}",
    }


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> Path:
    """A run directory with complete build-data, sft and train-reward stages (tiny, random models)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs") / "t"
    rng = random.Random(0)
    rows = [_row(rng, i) for i in range(48)]
    sft_rows = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(rows[:32]), "validation": datasets.Dataset.from_list(rows[32:40]),
        "test": datasets.Dataset.from_list(rows[40:]),
    })
    tokenizer = train_tokenizer([r["prompt"] + r["completion"] for r in rows] * 4, vocab_size=400)
    data = root / "build-data"
    sft_rows.save_to_disk(str(data / "sft"))
    tokenizer.save_pretrained(data / "tokenizer")
    StageDir(root, "build-data").finish(0)
    policy = build_tiny_causal_lm(tokenizer, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=128, seed=0))
    policy.save_pretrained(root / "sft" / "model")
    tokenizer.save_pretrained(root / "sft" / "model")
    (root / "sft" / "metrics.json").write_text(json.dumps({"sft/steps": 0}))
    StageDir(root, "sft").finish(0)
    rm = build_reward_model(policy.config, tokenizer, seed=1)  # same architecture and vocabulary as the policy
    rm_dir = root / "train-reward" / "model"
    rm.save_pretrained(rm_dir)
    tokenizer.save_pretrained(rm_dir)
    RewardFileConfig(bias=0.1, n_reference=1).save(rm_dir)
    StageDir(root, "train-reward").finish(0)
    return root


def _cfg(root: Path, **sections) -> ExperimentConfig:
    base = {
        "run": {"root": str(root.parent), "name": root.name, "threads": 1, "wandb": {"enabled": False}},
        "ppo": {"total_episodes": 8 * 4, "per_device_train_batch_size": 8, "num_ppo_epochs": 1,
                "local_rollout_forward_batch_size": 8, "response_length": 6, "max_prompt_length": 64,
                "learning_rate": 1e-3, "temperature": 1.0, "missing_eos_penalty": None, "save_every": 2, "sample_every": 2, "num_samples": 2},
        "rl": {"snapshot_every": 2, "baselines": [{"algo": "rloo", "total_episodes": 4, "per_device_train_batch_size": 4,
                                                   "num_generations": 2, "max_completion_length": 6,
                                                   "learning_rate": 1e-2, "missing_eos_penalty": None}],
               "gold_control": True},
        "eval_policy": {"max_prompts": 6, "best_of_n": [1, 2, 4], "batch_size": 8, "n_table_samples": 2},
        "reward": {"scoring_batch_size": 8},
        "data": {"prompt": {"max_prompt_tokens": 64}},  # lengths agree with ppo.max_prompt_length (checked)
    }
    return ExperimentConfig.model_validate(base | sections)


def test_ppo_then_eval_policy(run_root: Path) -> None:
    cfg = _cfg(run_root)
    with ForwardAudit() as audit:
        metrics = run_stage("ppo", cfg)
    ppo = run_root / "ppo"
    # Every model the stage ran (PPO's four, the gold control's, RLOO's policy and TRL's reference) followed the
    # device rule: placed by policy.device.place on run.device (the CPU here), and devices.json says where.
    assert audit.problems("cpu") == [] and len(audit.seen) >= 8
    devices = json.loads((ppo / "devices.json").read_text())["models"]
    assert {"policy", "reference policy", "value model", "reward model (scoring)", "gold control policy",
            "RLOO policy", "RLOO reference policy"} <= set(devices)
    assert metrics["ppo/updates"] == 4 and (ppo / "DONE.json").is_file()
    assert metrics["ppo/critic_from_rm"] is True  # same tokenizer: the critic starts as the reward model
    # Snapshots at updates 2 and 4 (the last), in the ordinary HF layout; the last equals the final policy.
    assert [s for s, _ in list_snapshots(ppo)] == [2, 4]
    last = AutoModelForCausalLM.from_pretrained(list_snapshots(ppo)[-1][1])
    final = AutoModelForCausalLM.from_pretrained(ppo / "policy")
    sft = AutoModelForCausalLM.from_pretrained(run_root / "sft" / "model")
    assert all(torch.equal(v, final.state_dict()[k]) for k, v in last.state_dict().items())
    assert any(not torch.equal(v, sft.state_dict()[k]) for k, v in final.state_dict().items())
    assert (ppo / "checkpoints").is_dir() and (ppo / "baselines" / "rloo" / "policy" / "config.json").is_file()
    control = AutoModelForCausalLM.from_pretrained(ppo / "gold_control" / "policy")  # PPO against the gold score
    assert any(not torch.equal(v, sft.state_dict()[k]) for k, v in control.state_dict().items())
    assert metrics["gold_control/seconds"] > 0 and metrics["gold_control/gold_scale"] > 0
    curve = [json.loads(line) for line in (ppo / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve if "objective/scores" in r] == [1, 2, 3, 4]
    assert "objective/gold" in curve[0]  # source sim: gold tracked during training
    samples = json.loads((ppo / "ppo_samples.json").read_text())
    assert samples["rows"] and "response" in samples["columns"]
    # A complete stage is skipped, not retrained.
    mtime = (ppo / "policy" / "model.safetensors").stat().st_mtime
    run_stage("ppo", cfg)
    assert (ppo / "policy" / "model.safetensors").stat().st_mtime == mtime

    with ForwardAudit() as audit:
        metrics = run_stage("eval-policy", cfg)
    assert audit.problems("cpu") == []
    out = run_root / "eval-policy"
    table = json.loads((out / "policy_table.json").read_text())
    methods = [r["method"] for r in table]
    assert methods == ["reference TL;DR", "SFT", "best-of-1", "best-of-2", "best-of-4", "PPO step 2", "PPO step 4", "RLOO",
                       "PPO on gold (control)"]
    for row in table:
        assert tuple(row) == ROW_KEYS, row["method"]
    by = {r["method"]: r for r in table}
    assert by["SFT"]["weights_changed"] is False and by["PPO step 4"]["weights_changed"] is True
    assert by["RLOO"]["weights_changed"] is True
    assert by["PPO on gold (control)"]["weights_changed"] is True
    assert by["PPO on gold (control)"]["compute"].startswith("PPO 4 updates against the gold score")
    assert abs(by["SFT"]["kl"]) < 1e-3  # sampled KL of the SFT policy to itself
    assert by["PPO step 4"]["kl"] > 0.0
    assert by["best-of-4"]["rm_score"] >= by["best-of-1"]["rm_score"]  # best-of-n picks by the reward model
    assert by["best-of-1"]["gold"] == pytest.approx(by["SFT"]["gold"])  # the same pool, uniform weights
    n_prompts = metrics["eval/prompts"]
    assert n_prompts == 6  # eval_policy.max_prompts of the 8 test rows
    for row in table[1:]:
        # The 95% Wilson interval of the per-prompt wins, over the evaluated prompts (not the samples).
        assert row["gold_win_ci"] == pytest.approx(list(wilson_interval(row["gold_win_rate"] * n_prompts, n_prompts)))
        # A response without EOS has all 6 tokens, one with EOS 1 to 6 (EOS counted): length bounds the rate.
        assert 1.0 + 5.0 * row["no_eos_rate"] - 1e-9 <= row["length"] <= 6.0
    # The random tiny SFT policy (400 tokens) all but never samples EOS within 6 tokens: every response runs full.
    assert by["SFT"]["no_eos_rate"] == 1.0 and by["SFT"]["length"] == 6.0
    assert by["PPO step 2"]["compute"].startswith("PPO 2 updates x 8 episodes")
    assert (out / "gold_vs_sqrt_kl.png").stat().st_size > 1000 and (out / "proxy_vs_gold.png").stat().st_size > 1000
    assert metrics["eval/ppo_step_4/kl"] == by["PPO step 4"]["kl"] and "eval/sft/gold_win_lo" in metrics
    # The on-policy check: the SFT pool's within-prompt pairs, ranked by the reward model against gold.
    check = json.loads((out / "on_policy_reward.json").read_text())
    assert check["samples_per_prompt"] == 4 and check["agreement"]["pairs"] > 0
    assert metrics["eval/on_policy/rm_gold_accuracy"] == check["agreement"]["accuracy"]
    assert metrics["eval/on_policy/rm_gold_implied_rho"] == pytest.approx(np.sin(np.pi * (check["agreement"]["accuracy"] - 0.5)))
    assert set(check["corr_gold"]) == {"coverage", "precision", "n_hallucinated", "n_summary_facts", "n_words"}
    # The paired comparison with SFT: every other method, on the same prompts; best-of-1 IS the SFT pool.
    vs_sft = json.loads((out / "vs_sft.json").read_text())
    assert set(vs_sft) == set(methods) - {"reference TL;DR", "SFT"}
    same = vs_sft["best-of-1"]["gold_win"]
    assert same["mean"] == pytest.approx(0.0, abs=1e-12) and same["lo"] == pytest.approx(0.0, abs=1e-12)
    ppo_gain = vs_sft["PPO step 4"]["gold"]
    assert ppo_gain["mean"] == pytest.approx(by["PPO step 4"]["gold"] - by["SFT"]["gold"])
    assert ppo_gain["lo"] <= ppo_gain["mean"] <= ppo_gain["hi"]
    assert metrics["eval/ppo_step_4/vs_sft/gold_win_mean"] == vs_sft["PPO step 4"]["gold_win"]["mean"]
    # What each method changes in the text: gold's parts per method; best-of-1 is the SFT pool, uniformly.
    parts = json.loads((out / "gold_parts.json").read_text())
    assert set(parts) == set(methods) - {"reference TL;DR"}
    assert parts["best-of-1"] == pytest.approx(parts["SFT"]) and set(parts["SFT"]) == set(check["corr_gold"])


def test_forced_rerun_of_a_complete_stage_starts_over(run_root: Path, tmp_path: Path) -> None:
    """--force on a finished ppo stage retrains with the new config; it used to "resume" from the final
    checkpoint, train nothing and report the old policy under the new learning rate."""
    root = tmp_path / "forced"
    root.mkdir()
    for stage in ("build-data", "sft", "train-reward"):
        (root / stage).symlink_to(run_root / stage)
    sections = {"rl": {"snapshot_every": 2, "baselines": [], "gold_control": False}}
    run_stage("ppo", _cfg(root, **sections))
    first = AutoModelForCausalLM.from_pretrained(root / "ppo" / "policy").state_dict()
    cfg = _cfg(root, **sections)
    cfg.ppo.learning_rate = 3e-3
    metrics = run_stage("ppo", cfg, force=True)
    assert "objective/scores" in metrics  # updates ran
    curve = [json.loads(line) for line in (root / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve if "objective/scores" in r] == [1, 2, 3, 4]
    assert curve[-1]["ppo/lr"] < 3e-3 and max(r["ppo/lr"] for r in curve if "ppo/lr" in r) > 1e-3
    second = AutoModelForCausalLM.from_pretrained(root / "ppo" / "policy").state_dict()
    assert any(not torch.equal(v, second[k]) for k, v in first.items())


def test_resume_under_changed_settings_refuses_then_force_applies_them(run_root: Path, tmp_path: Path) -> None:
    """An interrupted ppo stage resumed with another kl_coef / learning rate: its checkpoint would restore the
    old beta and schedule while config.yaml said the new ones. It now refuses, naming the keys and both ways
    out; the old values resume; --force starts over and the new values reach the optimizer and the KL term."""
    from pipelines.resume_check import ChangedSettings

    root = tmp_path / "resumed"
    root.mkdir()
    for stage in ("build-data", "sft", "train-reward"):
        (root / stage).symlink_to(run_root / stage)
    sections = {"rl": {"snapshot_every": 2, "baselines": [], "gold_control": False}}
    run_stage("ppo", _cfg(root, **sections))
    (root / "ppo" / "DONE.json").unlink()  # as if killed after its last checkpoint
    changed = _cfg(root, **sections)
    changed.ppo.kl_coef, changed.ppo.learning_rate = 0.3, 2e-3
    with pytest.raises(ChangedSettings) as err:
        run_stage("ppo", changed)
    message = str(err.value)
    assert "ppo.kl_coef: 0.05 -> 0.3" in message and "ppo.learning_rate: 0.001 -> 0.002" in message
    assert "--force" in message and "ppo.kl_coef=0.05" in message and "ppo.learning_rate=0.001" in message
    assert not (root / "ppo" / "DONE.json").exists()  # nothing was written
    run_stage("ppo", _cfg(root, **sections))  # the old values resume (from the last checkpoint)
    assert (root / "ppo" / "DONE.json").is_file()
    (root / "ppo" / "DONE.json").unlink()
    metrics = run_stage("ppo", changed, force=True)
    curve = [json.loads(line) for line in (root / "ppo" / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in curve if "objective/scores" in r]
    assert [r["step"] for r in updates] == [1, 2, 3, 4]  # started over
    assert updates[0]["objective/beta"] == pytest.approx(0.3)  # the new kl_coef is the KL term's beta
    # the new learning rate, decaying linearly over the 4 updates (logged before each update's step)
    assert [r["ppo/lr"] for r in updates[:2]] == pytest.approx([2e-3, 2e-3 * 3 / 4])
    assert "objective/scores" in metrics


def test_ppo_stage_under_two_processes(run_root: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m pipelines ppo`, as `accelerate launch` runs the stage on two GPUs, here
    on CPUs: both processes train, the global batch holds both processes' rollouts (half the updates of one
    process), and only the main process writes the folder (one curve with each update once, one DONE.json).
    Before, each process took itself for the only one on CPUs and both wrote the same snapshot folder."""
    import yaml

    from tests.launch import torchrun_two_cpus

    root = tmp_path / "runs" / "ddp"
    root.mkdir(parents=True)
    for stage in ("build-data", "sft", "train-reward"):
        (root / stage).symlink_to(run_root / stage)
    cfg = _cfg(root, rl={"snapshot_every": 1, "baselines": [], "gold_control": False})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    proc = torchrun_two_cpus("-m", "pipelines", "ppo", "--config", str(config), env={"WANDB_MODE": "disabled"})
    ppo = root / "ppo"
    metrics = json.loads((ppo / "metrics.json").read_text())
    assert metrics["ppo/updates"] == 2 and metrics["ppo/batch_size"] == 16  # 32 episodes, 8 per process
    curve = [json.loads(line) for line in (ppo / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve if "objective/scores" in r] == [1, 2]
    assert [s for s, _ in list_snapshots(ppo)] == [1, 2] and (ppo / "DONE.json").is_file()
    assert proc.stdout.count("[ppo] done in") == 1  # the main process reports; both trained
    assert proc.stdout.count("[ppo] 2 updates x 16 episodes") == 2


def test_one_process_stages_refuse_a_multi_process_launch(run_root: Path, monkeypatch) -> None:
    """eval-policy (like scrape, build-data, steer, report) would run once per process and race on its files:
    under a launch of several processes it stops before touching anything and says how to run it."""
    from types import SimpleNamespace

    import pipelines.stages as stages

    two = SimpleNamespace(num_processes=2, is_main_process=True, wait_for_everyone=lambda: None)
    monkeypatch.setattr(stages, "distributed_state", lambda: two)
    with pytest.raises(RuntimeError, match=r"'eval-policy' runs in one process.*python -m pipelines eval-policy"):
        run_stage("eval-policy", _cfg(run_root))
    assert stages.STAGES["ppo"].parallel and not stages.STAGES["eval-policy"].parallel


def test_snapshots_are_atomic_and_every_n(tmp_path: Path) -> None:
    tok = train_tokenizer(["a b c d e f g"] * 20, vocab_size=300)
    policy = build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=16, n_head=2, n_positions=32))
    snap = PolicySnapshots(policy, tok, tmp_path / "snapshots", every=3, last=7)
    (tmp_path / "snapshots" / "step-0000003.tmp").mkdir(parents=True)  # debris of an interrupted save
    for step in range(1, 8):
        snap(step)
    assert [s for s, _ in list_snapshots(tmp_path)] == [3, 6, 7]
    assert not list((tmp_path / "snapshots").glob("*.tmp"))


def test_gold_parts_by_hand() -> None:
    """Two prompts x two samples; the post's facts are boyfriend, crashed, car and 300."""
    post = "My boyfriend crashed my car and it cost $300."
    held = HeldOut(["p1", "p2"], [post, post], ["r", "r"], np.zeros(2), np.zeros(2))
    texts = [" my boyfriend crashed my car", " my car cost 300 dollars", " my sister hates me", " boyfriend"]
    res = Responses(texts, np.ones(4), np.ones(4, bool), np.zeros(4), np.zeros(4), 0.0, per_prompt=2)
    uniform = gold_parts(res, held)
    assert uniform["n_words"] == pytest.approx((5 + 4 + 4 + 1) / 4)  # "300" is a fact, not a word
    assert uniform["n_summary_facts"] == pytest.approx((3 + 2 + 1 + 1) / 4)  # sister: a fact the post lacks
    assert uniform["n_hallucinated"] == pytest.approx(1 / 4)
    picked = gold_parts(res, held, weights=np.array([[1.0, 0.0], [0.0, 1.0]]))  # sample 0, then sample 1
    assert picked["n_words"] == pytest.approx((5 + 1) / 2) and picked["n_hallucinated"] == 0.0
    assert picked["coverage"] == pytest.approx((0.75 + 0.25) / 2)


def test_critic_init_choice(tmp_path: Path) -> None:
    assert critic_init_dir("reward_model", tmp_path, same_vocab=True) == tmp_path
    assert critic_init_dir("reward_model", tmp_path, same_vocab=False) is None  # other tokens: from the policy
    assert critic_init_dir("policy", tmp_path, same_vocab=True) is None
    with pytest.raises(ValueError, match="rl.critic_init"):
        ExperimentConfig.model_validate({"rl": {"critic_init": "rm"}})


def test_eval_policy_needs_ppo(tmp_path: Path) -> None:
    root = tmp_path / "r"
    with pytest.raises(RuntimeError, match="needs the output of stage 'sft'"):
        run_stage("eval-policy", _cfg(root))


def test_load_finished_sim_run(tmp_path: Path, capsys) -> None:
    """bench/ diagnostics read a run only when its stages are complete and it is the simulated world."""
    from pipelines.rundir import load_finished_sim_run

    run, stages = tmp_path / "run", ("build-data", "sft")
    sim, real = tmp_path / "sim.yaml", tmp_path / "real.yaml"
    sim.write_text("scrape: {source: sim}\n")
    real.write_text("scrape: {source: reddit}\n")
    StageDir(run, "build-data").start(ExperimentConfig())
    StageDir(run, "build-data").finish(1.0)
    assert load_finished_sim_run(run, sim, [], stages) is None  # sft is missing
    assert "skipped: " in capsys.readouterr().out
    StageDir(run, "sft").start(ExperimentConfig())
    StageDir(run, "sft").finish(1.0)
    cfg = load_finished_sim_run(run, sim, ["eval_policy.max_prompts=3"], stages)
    assert cfg is not None and cfg.eval_policy.max_prompts == 3
    with pytest.raises(SystemExit, match="scrape.source is 'reddit'"):
        load_finished_sim_run(run, real, [], stages)


def test_gold_control_optimizes_gold_on_the_reward_models_scale(run_root: Path) -> None:
    """`rl.gold_control_scale: reward_model`: over the reference TL;DRs, shifted and scaled gold has the reward
    model's mean and spread, so one kl_coef weighs the KL penalty against both scores alike."""
    from data.sim.gold import gold_score
    from pipelines.analysis import gold_on_reward_scale
    from reward_model.scoring import RewardScorer

    rows = datasets.load_from_disk(str(run_root / "build-data" / "sft"))["train"]
    scorer = RewardScorer.from_pretrained(run_root / "train-reward" / "model", batch_size=8)
    shift, scale = gold_on_reward_scale(scorer, rows, n=1000)
    rm = scorer.score(list(rows["prompt"]), list(rows["completion"])).double().numpy()
    gold = np.array([gold_score(p, c) for p, c in zip(rows["post_text"], rows["completion"])])
    assert gold.std() > 0 and abs(scale - rm.std() / gold.std()) < 1e-9
    scaled = (gold - shift) * scale
    assert scaled.mean() == pytest.approx(rm.mean(), abs=1e-6) and scaled.std() == pytest.approx(rm.std(), rel=1e-6)
    with pytest.raises(ValueError, match="no spread"):
        gold_on_reward_scale(scorer, rows.select([0]))
