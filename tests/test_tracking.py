"""Tracker: local metric files, offline W&B files, and no secret anywhere."""

import json

from pipelines.tracking import Tracker, scrub_secrets


def test_scrub_secrets_by_key_and_by_value(monkeypatch):
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", "s3cr3t-value")
    cleaned = scrub_secrets({"client_secret": "x", "nested": {"api_key": "k", "note": "uses s3cr3t-value"}, "n": 1})
    assert cleaned["client_secret"] == "<redacted>"
    assert cleaned["nested"]["api_key"] == "<redacted>"
    assert "s3cr3t-value" not in json.dumps(cleaned)
    assert cleaned["n"] == 1


def test_tracker_writes_local_files_and_offline_run(tmp_path, monkeypatch):
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", "another-s3cret")
    stage_dir = tmp_path / "demo" / "stage"
    with Tracker(stage_dir, "stage", {"a": 1, "note": "another-s3cret"}, group="demo") as tracker:
        tracker.log({"rm/accuracy": 0.5}, step=1)
        tracker.log({"rm/accuracy": 0.75}, step=2)
        tracker.table("samples", ["prompt", "response"], [["p", "r"]])
        tracker.summary({"rm/accuracy": 0.75})
    lines = [json.loads(x) for x in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["rm/accuracy"] for x in lines] == [0.5, 0.75]
    assert json.loads((stage_dir / "metrics.json").read_text())["rm/accuracy"] == 0.75
    run_id = (stage_dir / "wandb_run_id.txt").read_text().strip()
    wandb_files = list((tmp_path / "demo" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert wandb_files, "an offline W&B run file should exist"
    for path in (tmp_path / "demo").rglob("*"):
        if path.is_file():
            assert b"another-s3cret" not in path.read_bytes(), path


def test_scrub_secrets_keeps_token_counts_and_names():
    """Settings that merely mention tokens stay in saved configs; credential tokens do not."""
    cfg = {"n_tokens": 10, "max_new_tokens": 48, "init_token": " x", "tokenizer": {"vocab_size": 2048},
           "max_prompt_tokens": 200, "access_token": "abc", "hf_token": "hf_x", "token": "t", "password": "p"}
    cleaned = scrub_secrets(cfg)
    for key in ("n_tokens", "max_new_tokens", "init_token", "tokenizer", "max_prompt_tokens"):
        assert cleaned[key] == cfg[key], key
    for key in ("access_token", "hf_token", "token", "password"):
        assert cleaned[key] == "<redacted>", key
