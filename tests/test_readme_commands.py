"""The README's "Real Reddit" and "Dumps" commands, read from README.md and run verbatim with make.

They run in a scratch checkout (links to this repository's Makefile, pyproject.toml, configs/ and .venv), so
their `runs/` and `dumps/` never touch the repository. Real Reddit is the replay of recorded reddit.com
responses (`tests/reddit_replay.py`), reached through REDDIT_OAUTH_URL / REDDIT_URL exactly as a user would
point the scraper at another server; dumps are real post lines in `dumps/`, where configs/dumps.yaml looks.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.reddit_replay import RedditReplay

REPO = Path(__file__).resolve().parent.parent
CASSETTES = sorted((REPO / "tests" / "fixtures" / "reddit_cassettes").glob("*.json"))

pytestmark = pytest.mark.slow


def readme_commands(section: str) -> list[str]:
    """The `make ...` lines of the bash blocks under `## {section}` in README.md (export lines set env only)."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README.md has no '## {section}' section"
    blocks = re.findall(r"```bash\n(.*?)```", match.group(1), re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert all(line.startswith(("make ", "export ")) for line in lines), lines
    return [line for line in lines if line.startswith("make ")]


def scratch_checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("Makefile", "pyproject.toml", "configs", ".venv"):
        (root / name).symlink_to(REPO / name)
    return root


def run_make(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # The linked .venv is this repository's, installed by `make test` before the tests ran: `-o` tells make not
    # to remake its install stamp (through MAKEFLAGS, so the command line stays the README's).
    env = {**os.environ, **env, "MAKEFLAGS": "-o .venv/.installed"}
    proc = subprocess.run(shlex.split(line), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"`{line}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def rows(path: Path) -> list[dict]:
    return [r for f in sorted(path.glob("part-*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_real_reddit_commands_run_verbatim_against_recorded_reddit(tmp_path):
    commands = readme_commands("Real Reddit")
    assert len(commands) == 3 and "CONFIG=configs/reddit.yaml" in commands[0]
    root = scratch_checkout(tmp_path)
    with RedditReplay.from_files(CASSETTES, any_sort=True) as replay:
        env = {"REDDIT_CLIENT_ID": "replay-id", "REDDIT_CLIENT_SECRET": "replay-secret-value",
               "REDDIT_USER_AGENT": "python:upvote-rlhf-test:0.1", "REDDIT_OAUTH_URL": replay.base_url,
               "REDDIT_URL": replay.base_url, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
        outputs = [run_make(line, root, env) for line in commands]
    # 1. listings of configs/reddit.yaml: AskReddit's recorded posts stored (their threads were not recorded:
    #    404, counted, the posts kept); the subreddits with no recording are refused and skipped, not fatal.
    listing = root / "runs" / "reddit" / "scrape"
    posts = rows(listing / "records" / "posts")
    assert posts and {p["subreddit"].lower() for p in posts} == {"askreddit"}
    assert {p["comments_status"] for p in posts} == {"not_found"}
    metrics = json.loads((listing / "metrics.json").read_text())
    assert metrics["scrape/skipped/thread_not_found"] == len(posts)
    assert "replay-secret-value" not in (listing / "config.yaml").read_text() + outputs[0].stdout
    # 2. the two recorded announcement threads, with their comments and recorded scores
    threads = root / "runs" / "threads"
    comments = rows(threads / "scrape" / "records" / "comments")
    assert {c["post_id"] for c in comments} == {"n49rw", "fo7p5b"} and len(comments) > 100
    # 3. same-post pairs from those threads' comments
    card = json.loads((threads / "build-data" / "data_card.json").read_text())
    assert sum(card["splits"]["pairs"].values()) > 0 and card["records"]["comments"] == len(comments)


def test_dumps_commands_run_verbatim_on_real_dump_lines(tmp_path):
    """configs/dumps.yaml reads dumps/ (a directory expands to its dump files): 200 real 2013 self-posts."""
    commands = readme_commands("Dumps")
    assert len(commands) == 2 and all("CONFIG=configs/dumps.yaml" in c for c in commands)
    root = scratch_checkout(tmp_path)
    (root / "dumps").mkdir()
    fixture = REPO / "tests" / "fixtures" / "real_tldr" / "RS_top_tldr_200.zst"
    (root / "dumps" / fixture.name).write_bytes(fixture.read_bytes())
    env = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    outputs = [run_make(line, root, env) for line in commands]
    run = root / "runs" / "dumps"
    posts = rows(run / "scrape" / "records" / "posts")
    assert len(posts) == 200 and {p["subreddit"] for p in posts} == {"TalesFromRetail", "pettyrevenge"}
    card = json.loads((run / "build-data" / "data_card.json").read_text())
    assert sum(card["splits"]["sft"].values()) > 150  # real author TL;DRs, extracted
    assert "WARNING: build-data produced 0 preference pairs" in outputs[1].stdout  # no comments in this dump
