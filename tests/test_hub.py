"""Hub loaders on small local files in the hub's shape (nothing downloads)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import pytest

from data.prompts import PromptConfig
from data.sources.hub import PAIR_FEATURES, HubConfig, load_hub_pairs


def shp_row(post: str, a: str, b: str, score_a: int, score_b: int, domain: str = "askculinary_train", **kw) -> dict:
    row = {
        "post_id": post, "domain": domain, "upvote_ratio": 0.95,
        "history": f"How do I fix {post}?\nMore details about {post}.",
        "c_root_id_A": a, "c_root_id_B": b, "created_at_utc_A": 1_600_000_100, "created_at_utc_B": 1_600_000_200,
        "score_A": score_a, "score_B": score_b, "human_ref_A": f"answer {a}", "human_ref_B": f"answer {b}",
        "labels": int(score_a > score_b), "seconds_difference": 100.0,
        "score_ratio": max(score_a, score_b) / min(score_a, score_b),
    }
    row.update(kw)
    return row


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def shp_dir(tmp_path: Path) -> Path:
    root = tmp_path / "SHP"
    write_jsonl(root / "askculinary" / "train.json", [
        shp_row("p1", "a1", "b1", 10, 3),
        shp_row("p1", "a2", "b2", 4, 12),  # B preferred
        shp_row("p1", "a3", "b3", 5, 4),  # ratio 1.25 < 2
        shp_row("p2", "a4", "b4", 30, 2),
    ])
    write_jsonl(root / "legaladvice" / "train.json", [shp_row("p3", "a5", "b5", 9, 3, domain="legaladvice_train")])
    valid = [shp_row("p4", "a6", "b6", 8, 2, domain="askculinary_validation")]
    write_jsonl(root / "askculinary" / "validation.json", valid)
    write_jsonl(root / "askculinary" / "test.json", [shp_row("p5", "a7", "b7", 2, 8, domain="askculinary_test")])
    return root


def test_shp_directory_maps_to_pair_schema(shp_dir: Path) -> None:
    res = load_hub_pairs(HubConfig(dataset="shp", path=str(shp_dir), min_score_ratio=2.0))
    pairs = res.pairs
    assert set(pairs) == {"train", "validation", "test"}
    assert pairs["train"].features == PAIR_FEATURES
    assert (len(pairs["train"]), len(pairs["validation"]), len(pairs["test"])) == (4, 1, 1)
    assert res.drops == {"score_ratio": 1} and res.rows_read == 7
    rows = {r["chosen_id"]: r for r in pairs["train"]}
    assert set(rows) == {"a1", "b2", "a4", "a5"}
    flipped = rows["b2"]
    assert (flipped["rejected_id"], flipped["chosen_score"], flipped["rejected_score"]) == ("a2", 12, 4)
    assert flipped["chosen"] == " answer b2" and flipped["rejected"] == " answer a2"
    assert flipped["score_ratio"] == pytest.approx(3.0) and flipped["margin"] == 0.0
    assert flipped["chosen_created_utc"] == 1_600_000_200.0
    assert flipped["subreddit"] == "askculinary" and rows["a5"]["subreddit"] == "legaladvice"
    assert flipped["prompt"].startswith("SUBREDDIT: r/askculinary\n\nTITLE: \n\nPOST: How do I fix p1?")
    assert flipped["prompt"].endswith("TL;DR:")
    assert flipped["post_text"] == "How do I fix p1?\nMore details about p1."
    assert all(r["strategy"] == "shp" for r in pairs["train"])
    assert len(set(pairs["train"]["pair_id"])) == 4
    assert pairs["test"][0]["chosen_id"] == "b7"


def test_shp_filters_and_token_budget(shp_dir: Path) -> None:
    cfg = HubConfig(dataset="shp", path=str(shp_dir), subreddits=["AskCulinary"], max_pairs_per_post=1,
                    prompt=PromptConfig(max_prompt_tokens=70))
    res = load_hub_pairs(cfg, count_tokens=len)  # one "token" per character
    train = res.pairs["train"]
    assert sorted(train["post_id"]) == ["p1", "p2"]
    assert res.drops["subreddit"] == 1 and res.drops["max_pairs_per_post"] == 2
    for prompt in train["prompt"]:
        assert len(prompt) <= 70 and "More details" not in prompt  # cut at the newline
        assert prompt.endswith("?\n\nTL;DR:")


def test_shp_margin_from_score_ratio(shp_dir: Path) -> None:
    cfg = HubConfig(dataset="shp", path=str(shp_dir), margin={"enabled": True, "scale": 1.0})
    train = load_hub_pairs(cfg).pairs["train"]
    for ratio, margin in zip(train["score_ratio"], train["margin"]):
        assert margin == pytest.approx(math.log(ratio)) and margin >= 0


def summarize_row(pid: str, choice: int, split: str, *, post: str | None = "I did a thing.\nIt went badly.",
                  worker: str = "w1") -> dict:
    info = {"id": pid, "post": post, "title": f"Title {pid}", "subreddit": "tifu", "site": None, "article": None}
    if post is None:
        info.update(subreddit=None, title=None, article="CNN article text", site="cnn")
    return {"info": info,
            "summaries": [{"text": f" summary zero of {pid}", "policy": "sup2", "note": None},
                          {"text": f" summary one of {pid}", "policy": "ppo_xl", "note": None}],
            "choice": choice, "worker": worker, "batch": "batch3", "split": split, "extra": None}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_summarize_from_feedback_file(tmp_path: Path, fmt: str) -> None:
    rows = [
        summarize_row("t1", 1, "train"),
        summarize_row("t1", 1, "train", worker="w2"),  # same comparison, another labeller: kept
        summarize_row("t1", 1, "train"),  # exact duplicate: dropped
        summarize_row("t2", 0, "valid1"),
        summarize_row("t3", 0, "valid2"),
        summarize_row("c1", 0, "valid2", post=None),
        {"info": {"id": "bad"}, "summaries": [{"text": "x"}], "choice": 0},
    ]
    path = tmp_path / f"comparisons.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    else:
        datasets.Dataset.from_list(rows[:-1]).to_parquet(str(path))
    res = load_hub_pairs(HubConfig(dataset="summarize_from_feedback", path=str(path)))
    train = res.pairs["train"]
    assert (len(train), len(res.pairs["validation"]), len(res.pairs["test"])) == (2, 1, 1)
    first = train[0]
    assert first["strategy"] == "human" and first["subreddit"] == "tifu"
    assert first["chosen"] == " summary one of t1" and first["rejected"] == " summary zero of t1"
    assert first["chosen_id"].startswith("ppo_xl:") and first["rejected_id"].startswith("sup2:")
    assert (first["chosen_score"], first["rejected_score"], first["score_ratio"]) == (1, 0, 1.0)
    assert first["prompt"] == "SUBREDDIT: r/tifu\n\nTITLE: Title t1\n\nPOST: I did a thing.\nIt went badly.\n\nTL;DR:"
    assert first["post_text"] == "Title t1\n\nI did a thing.\nIt went badly."
    assert res.pairs["validation"][0]["chosen"] == " summary zero of t2"
    assert res.drops["duplicate"] == 1 and res.drops["not_reddit"] == 1
    if fmt == "jsonl":
        assert res.drops["malformed"] == 1


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hub_pairs(HubConfig(dataset="shp", path=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train"):
        load_hub_pairs(HubConfig(dataset="shp", path=str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="dataset"):
        HubConfig(dataset="hh-rlhf")
    with pytest.raises(ValueError, match="min_score_ratio"):
        HubConfig(dataset="shp", min_score_ratio=0.5)
