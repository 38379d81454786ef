"""`python -m pipelines publish` offline: without a token or a repo id it says what to set and exits non-zero with
no traceback; with a token but HF_HUB_OFFLINE=1 it refuses and the token appears nowhere; a dry run lists the
folders, files and repo ids it would upload. (A real run's dry run and card linking: tests/test_end_to_end.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import configio
from pipelines.__main__ import main
from pipelines.config import ExperimentConfig
from pipelines.publish import PublishConfig, plan

ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_" + "FakeTokenForTests" * 2


def _files(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)


@pytest.fixture()
def finished_run(tmp_path: Path) -> Path:
    """The folder layout of a finished run (file names as the stages write them; contents do not matter to the
    plan): split folders with cache files, model folders with trainer checkpoints, DONE.json markers."""
    run = tmp_path / "runs" / "pub"
    split = ["data-00000-of-00001.arrow", "dataset_info.json", "state.json", "cache-0a1b.arrow"]
    _files(run / "build-data", ["README.md", "data_card.json", "data_card.md", "config.yaml", "DONE.json",
                                "metrics.json", "build_info.json", "tokenizer/tokenizer.json", "pairs/dataset_dict.json",
                                "sft/dataset_dict.json", *(f"{c}/{s}/{f}" for c in ("pairs", "sft")
                                                           for s in ("train", "test") for f in split)])
    model = ["README.md", "config.json", "model.safetensors", "tokenizer.json", "checkpoints/README.md",
             "checkpoints/checkpoint-4/model.safetensors", "short_context/model.safetensors"]
    _files(run / "sft", ["DONE.json", *(f"model/{f}" for f in model)])
    _files(run / "train-reward", ["DONE.json", "model/reward_config.json", *(f"model/{f}" for f in model)])
    _files(run / "ppo", ["DONE.json", "policy/README.md", "policy/config.json", "policy/model.safetensors",
                         "snapshots/step-0000001/model.safetensors"])
    return run


def _args(run: Path, *overrides: str) -> list[str]:
    return ["publish", "--config", str(ROOT / "configs" / "tiny.yaml"), f"run.root={run.parent}",
            f"run.name={run.name}", "run.wandb.enabled=false", *overrides]


def test_no_token_says_how_and_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1")  # no stored login either
    proc = subprocess.run([sys.executable, "-m", "pipelines", *_args(tmp_path / "runs" / "none", "publish.repo_id=alice/upvote")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "no Hugging Face token: set HF_TOKEN" in proc.stderr and "hf auth login" in proc.stderr
    assert "stage build-data is not complete" in proc.stderr  # every problem at once, not one per attempt


def test_fake_token_while_offline_is_refused_and_stays_out_of_files_and_output(
    finished_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as exit_info:
        main(_args(finished_run, "publish.repo_id=alice/upvote"))
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "HF_HUB_OFFLINE=1 is set" in captured.err and "HF_HUB_OFFLINE=0" in captured.err
    assert "no Hugging Face token" not in captured.err and "publish.repo_id is not set" not in captured.err
    assert FAKE_TOKEN not in captured.out + captured.err
    assert not (finished_run / "publish" / "published.json").exists()
    for path in finished_run.rglob("*"):
        assert not path.is_file() or FAKE_TOKEN not in path.read_text(errors="replace"), path


def test_dry_run_lists_folders_files_and_repo_ids(finished_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(_args(finished_run, "publish.repo_id=alice/upvote", "publish.dry_run=true")) == 0
    out = capsys.readouterr().out
    for part, folder, repo in (("dataset", "build-data", "alice/upvote-data (dataset repo, private)"),
                               ("sft_policy", "sft/model", "alice/upvote-sft (model repo, private)"),
                               ("reward_model", "train-reward/model", "alice/upvote-reward-model (model repo, private)"),
                               ("ppo_policy", "ppo/policy", "alice/upvote-ppo (model repo, private)")):
        assert f"{part:<13} {finished_run / folder} -> {repo}" in out
    assert "a real upload would first need" in out
    assert json.loads((finished_run / "publish" / "metrics.json").read_text())["publish/dry_run"] == 1

    dataset, sft, rm, ppo = plan(PublishConfig(repo_id="alice/upvote"), finished_run)
    # Data files and statistics go up; cache files, the tokenizer and the stage's bookkeeping do not.
    assert "pairs/train/data-00000-of-00001.arrow" in dataset.files and "data_card.json" in dataset.files
    assert not [f for f in dataset.files if "cache-" in f or f.startswith("tokenizer/") or f in ("DONE.json", "metrics.json")]
    # Models: the top-level files only (sub-folders hold trainer checkpoints and warm-up stages).
    assert sorted(sft.files) == ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    assert "reward_config.json" in rm.files and not [f for f in ppo.files + rm.files if "/" in f]
    assert dataset.files[0] == "README.md" and all(not u.problem for u in (dataset, sft, rm, ppo))


def test_dry_run_names_parts_whose_stage_is_missing(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    (finished_run / "ppo" / "DONE.json").unlink()
    assert main(_args(finished_run, "publish.dry_run=true", "publish.include=[dataset,ppo_policy]")) == 0
    out = capsys.readouterr().out
    assert "<publish.repo_id>-data" in out and "sft_policy" not in out
    assert "cannot upload: stage ppo is not complete" in out and "publish.repo_id is not set" in out


@pytest.mark.parametrize("override, expected", [
    ("publish.repo_id=alice", "has no namespace"),
    ("publish.repo_id=alice/up//x", "is not a Hub repo id"),
    ("publish.include=[dataset,dataset]", "lists a part twice"),
    ("publish.include=[weights]", "publish.include"),
])
def test_bad_publish_settings_are_config_errors(override: str, expected: str) -> None:
    with pytest.raises(configio.ConfigError, match=expected):
        configio.load(ExperimentConfig, ROOT / "configs" / "tiny.yaml", [override])


def test_a_hub_error_is_a_message_with_the_token_removed(finished_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    """Against a local server that answers every call with 401 and echoes the Authorization header back (as a
    careless proxy might): the real huggingface_hub client fails, publish says so without the token."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from huggingface_hub import constants

    class Refuse(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = json.dumps({"error": f"Invalid credentials: {self.headers.get('authorization')}"}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(_args(finished_run, "publish.repo_id=alice/upvote"))
    finally:
        server.shutdown()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "the Hub refused or could not be reached" in err and "401" in err and "pushed before that: nothing" in err
    assert "Bearer <token>" in err and FAKE_TOKEN not in err and "hf auth login" in err
