"""Pair rules on hand-built records: each SHP / DialogRPT / cross-post rule, margins, dedup, caps, splits."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from data.pairs import (
    CROSS_POST_FEATURES,
    PAIR_FEATURES,
    PairsConfig,
    build_pairs,
    dedup_pairs,
    normalized_scores,
)
from data.prompts import PromptConfig, prepare_posts
from data.shards import ShardWriter, load_rows
from data.splits import PostSplitter, SplitConfig
from pipelines.build import DatasetsConfig, build_datasets

T0 = 1_700_000_000.0
HOUR = 3600.0


def words(text: str) -> int:
    return len(text.split())


def make_post(pid: str, *, score: int = 50, created: float = T0, sub: str = "askreddit", title: str | None = None,
              selftext: str | None = None, author: str = "op-hash") -> dict:
    return {
        "id": pid, "subreddit": sub, "title": title or f"Question {pid}",
        "selftext": selftext if selftext is not None else f"Body of post {pid}.\n\nSecond paragraph of {pid}.",
        "author": author, "created_utc": created, "score": score, "upvote_ratio": 0.9, "num_comments": 3,
        "over_18": False, "edited": False, "stickied": False, "distinguished": "", "permalink": f"/r/{sub}/{pid}/",
        "retrieved_utc": created + 10 * 24 * HOUR, "source": "test",
    }


def make_comment(cid: str, pid: str, *, score: int, created: float, body: str | None = None, author: str | None = None,
                 parent: str | None = None, is_submitter: bool = False, distinguished: str = "",
                 stickied: bool = False, sub: str = "askreddit") -> dict:
    return {
        "id": cid, "link_id": f"t3_{pid}", "parent_id": parent or f"t3_{pid}", "post_id": pid, "subreddit": sub,
        "body": body if body is not None else f"Comment {cid} says something useful.",
        "author": author or f"user-{cid}", "created_utc": created, "score": score,
        "depth": 0 if parent is None else 1, "is_submitter": is_submitter, "edited": False, "stickied": stickied,
        "distinguished": distinguished, "retrieved_utc": created + 10 * 24 * HOUR, "source": "test",
    }


def write_records(root: Path, posts: list[dict], comments: list[dict]) -> Path:
    with ShardWriter(root, "posts", rows_per_shard=50) as w:
        for p in posts:
            w.add(p)
    with ShardWriter(root, "comments", rows_per_shard=50) as w:
        for c in comments:
            w.add(c)
    return root


def run_pairs(tmp_path: Path, posts: list[dict], comments: list[dict], cfg: PairsConfig,
              split: SplitConfig | None = None):
    """Round-trip through Parquet shards, then build pairs (all in train unless a split is given)."""
    root = write_records(tmp_path / "records", posts, comments)
    post_rows = load_rows(root, "posts")
    prepared = prepare_posts(post_rows, PromptConfig(max_prompt_tokens=200), words)
    split = split or SplitConfig(validation_fraction=0.0, test_fraction=0.0)
    splitter = PostSplitter.from_posts(split, [p["created_utc"] for p in post_rows])
    return build_pairs(prepared, load_rows(root, "comments"), cfg, words, splitter)


def rows(result) -> list[dict]:
    return [r for s in result.pairs for r in result.pairs[s]]


# ------------------------------------------------------------------------------------------------- same_post
def test_same_post_ratio_and_timestamp_rules(tmp_path):
    posts = [make_post("p1")]
    comments = [
        make_comment("c1", "p1", score=10, created=T0 + 100),
        make_comment("c2", "p1", score=30, created=T0 + 200),  # 3x c1, written later: c2 > c1
        make_comment("c3", "p1", score=12, created=T0 + 300),  # 1.2x c1: ratio too small; c2 > c3 but c2 earlier
    ]
    result = run_pairs(tmp_path, posts, comments, PairsConfig())
    got = rows(result)
    assert [(r["chosen_id"], r["rejected_id"]) for r in got] == [("c2", "c1")]
    r = got[0]
    assert r["strategy"] == "same_post" and r["chosen_score"] == 30 and r["rejected_score"] == 10
    assert r["score_ratio"] == pytest.approx(3.0) and r["margin"] == 0.0
    assert r["chosen"].startswith(" ") and not r["chosen"].startswith("  ")
    assert r["prompt"].startswith("SUBREDDIT: r/askreddit\n\nTITLE: Question p1\n\nPOST: ")
    assert r["prompt"].endswith("TL;DR:")
    assert result.drops["same_post/pair_score_ratio_below_min"] == 1
    assert result.drops["same_post/pair_preferred_written_earlier"] == 1

    # Without the timestamp rule the earlier-but-higher comment wins too.
    cfg = PairsConfig.model_validate({"same_post": {"require_chosen_later": False}})
    got = {(r["chosen_id"], r["rejected_id"]) for r in rows(run_pairs(tmp_path / "b", posts, comments, cfg))}
    assert got == {("c2", "c1"), ("c2", "c3")}


def test_same_post_excludes_authors_and_low_scores(tmp_path):
    posts = [make_post("p1", author="op-hash")]
    good = [make_comment("a", "p1", score=2, created=T0 + 1)]
    bad = [
        make_comment("del", "p1", score=99, created=T0 + 9, body="[deleted]"),
        make_comment("mod", "p1", score=99, created=T0 + 9, distinguished="moderator"),
        make_comment("sticky", "p1", score=99, created=T0 + 9, stickied=True),
        make_comment("op", "p1", score=99, created=T0 + 9, is_submitter=True),
        make_comment("op2", "p1", score=99, created=T0 + 9, author="op-hash"),  # flag missing, same author hash
        make_comment("reply", "p1", score=99, created=T0 + 9, parent="t1_a"),
        make_comment("low", "p1", score=1, created=T0 + 9),
    ]
    result = run_pairs(tmp_path, posts, good + bad, PairsConfig())
    assert rows(result) == []
    d = result.drops
    assert d["comments/deleted"] == 1 and d["comments/distinguished"] == 1 and d["comments/stickied"] == 1
    assert d["comments/submitter"] == 2 and d["comments/not_top_level"] == 1
    assert d["same_post/comment_score_below_min"] == 1 and d["same_post/post_fewer_than_2_comments"] == 1

    # Allowing 1-point comments makes the pair (low=1 vs a=2 fails ratio; a is later? no) -> check via ratio.
    cfg = PairsConfig.model_validate({"same_post": {"min_comment_score": 1}})
    got = rows(run_pairs(tmp_path / "b", posts, good + [make_comment("late", "p1", score=5, created=T0 + 50)], cfg))
    assert [(r["chosen_id"], r["rejected_id"]) for r in got] == [("late", "a")]


def test_same_post_post_score_threshold(tmp_path):
    posts = [make_post("p1", score=9)]
    comments = [make_comment("c1", "p1", score=3, created=T0), make_comment("c2", "p1", score=9, created=T0 + 5)]
    result = run_pairs(tmp_path, posts, comments, PairsConfig())
    assert rows(result) == [] and result.drops["same_post/post_score_below_min"] == 1
    cfg = PairsConfig.model_validate({"same_post": {"min_post_score": 5}})
    assert len(rows(run_pairs(tmp_path / "b", posts, comments, cfg))) == 1


def _doubling_thread(n: int) -> list[dict]:
    # Each later comment has twice the score of the previous one: every pair passes SHP.
    return [make_comment(f"c{i}", "p1", score=2 ** (i + 1), created=T0 + 10 * i) for i in range(n)]


def test_same_post_per_post_cap_and_selection(tmp_path):
    posts, comments = [make_post("p1")], _doubling_thread(6)  # 15 valid pairs
    result = run_pairs(tmp_path, posts, comments, PairsConfig())
    assert len(rows(result)) == 5 and result.drops["same_post/pair_over_post_cap"] == 10
    cfg = PairsConfig.model_validate({"same_post": {"cap_selection": "largest_ratio", "max_pairs_per_post": 1}})
    (best,) = rows(run_pairs(tmp_path / "b", posts, comments, cfg))
    assert (best["chosen_id"], best["rejected_id"]) == ("c5", "c0")
    cfg = PairsConfig.model_validate({"same_post": {"max_pairs_per_post": None}})
    assert len(rows(run_pairs(tmp_path / "c", posts, comments, cfg))) == 15


def test_same_post_tldr_only(tmp_path):
    long_body = " ".join(["word"] * 80)
    comments = [
        make_comment("c1", "p1", score=3, created=T0, body="Short summary: he lied."),
        make_comment("c2", "p1", score=20, created=T0 + 5, body="TL;DR: she left him for the dog"),
        make_comment("c3", "p1", score=90, created=T0 + 9, body=long_body),  # not summary-style: too long
        make_comment("c4", "p1", score=90, created=T0 + 9, body="Did you ask her?"),  # a question
    ]
    cfg = PairsConfig.model_validate({"same_post": {"tldr_only": True}})
    result = run_pairs(tmp_path, [make_post("p1")], comments, cfg)
    (r,) = rows(result)
    assert (r["chosen_id"], r["rejected_id"]) == ("c2", "c1")
    assert r["chosen"] == " she left him for the dog"  # the TL;DR marker is stripped: the prompt has one
    assert result.drops["same_post/comment_not_tldr_like"] == 2
    cfg = PairsConfig.model_validate({"same_post": {"tldr_only": True, "tldr_require_marker": True}})
    assert rows(run_pairs(tmp_path / "b", [make_post("p1")], comments, cfg)) == []


# ------------------------------------------------------------------------------------------------- time_adjacent
def test_time_adjacent_consecutive_within_gap(tmp_path):
    comments = [
        make_comment("a", "p1", score=5, created=T0),
        make_comment("b", "p1", score=1, created=T0 + 0.5 * HOUR),
        make_comment("c", "p1", score=9, created=T0 + 3 * HOUR),
        make_comment("d", "p1", score=8, created=T0 + 3.2 * HOUR),
    ]
    cfg = PairsConfig.model_validate({"same_post": {"enabled": False}, "time_adjacent": {"enabled": True}})
    result = run_pairs(tmp_path, [make_post("p1")], comments, cfg)
    got = {(r["chosen_id"], r["rejected_id"]) for r in rows(result)}
    assert got == {("a", "b"), ("c", "d")}  # b-c are 2.5 h apart; a-c are not consecutive
    assert all(r["strategy"] == "time_adjacent" for r in rows(result))
    assert result.drops["time_adjacent/pair_time_gap_above_max"] == 1

    cfg = PairsConfig.model_validate(
        {"same_post": {"enabled": False}, "time_adjacent": {"enabled": True, "max_hour_gap": 3, "min_score_ratio": 1.5}}
    )
    result = run_pairs(tmp_path / "b", [make_post("p1")], comments, cfg)
    assert {(r["chosen_id"], r["rejected_id"]) for r in rows(result)} == {("a", "b"), ("c", "b")}
    assert result.drops["time_adjacent/pair_score_difference_below_min"] == 1  # 9 vs 8


# ------------------------------------------------------------------------------------------------- cross_post
def test_cross_post_pairs_are_separate_and_within_one_split(tmp_path):
    posts = [
        make_post(f"p{i}", score=5 + 7 * ((i * 7) % 12), created=T0 + i * HOUR,
                  selftext=f"My story number {i}.\n\nTL;DR: summary number {i}")
        for i in range(40)
    ]
    cfg = PairsConfig.model_validate(
        {"same_post": {"enabled": False}, "cross_post": {"enabled": True, "window_hours": 3, "min_normalized_gap": 0.2}}
    )
    split = SplitConfig(validation_fraction=0.3, test_fraction=0.3)
    result = run_pairs(tmp_path, posts, [], cfg, split=split)
    assert rows(result) == []  # nothing in the main (one-prompt) dataset
    cross = result.cross_post
    assert cross is not None and cross["train"].features == CROSS_POST_FEATURES
    all_rows = [r for s in cross for r in cross[s]]
    assert len(all_rows) > 10
    splitter = PostSplitter(split)
    for s in cross:
        for r in cross[s]:
            assert r["chosen_score"] > r["rejected_score"] and r["score_ratio"] > 1
            assert r["rejected_prompt"] != r["prompt"] and r["rejected_post_id"] == r["rejected_id"]
            assert splitter.split_of(r["post_id"], 0) == splitter.split_of(r["rejected_post_id"], 0) == s
            assert abs(r["chosen_created_utc"] - r["rejected_created_utc"]) <= 3 * HOUR
            assert r["chosen"] == f" summary number {r['post_id'][1:]}" and "TL;DR: summary" not in r["prompt"]

    # SHP's ratio rule on top of the normalized gap: the pairs whose raw scores are under 2x apart go, and only those
    ratio_cfg = cfg.model_copy(update={"cross_post": cfg.cross_post.model_copy(update={"min_score_ratio": 2.0})})
    strict = run_pairs(tmp_path / "ratio", posts, [], ratio_cfg, split=split).cross_post
    kept = [r for s in strict for r in strict[s]]
    assert 0 < len(kept) < len(all_rows) and all(r["score_ratio"] >= 2.0 for r in kept)
    assert {r["pair_id"] for r in kept} == {r["pair_id"] for r in all_rows if r["score_ratio"] >= 2.0}


def test_normalized_scores():
    z = normalized_scores([1, 10, 100], "zlog")
    assert z[0] < z[1] < z[2] and abs(sum(z)) < 1e-9
    assert normalized_scores([5, 1, 5, 9], "percentile") == [0.5, 0.0, 0.5, 1.0]


# ------------------------------------------------------------------------------------------------- margins, dedup
def test_margins(tmp_path):
    posts = [make_post("p1")]
    comments = [make_comment("c1", "p1", score=10, created=T0), make_comment("c2", "p1", score=30, created=T0 + 5)]
    cfg = PairsConfig.model_validate({"margin": {"enabled": True, "scale": 2.0}})
    (r,) = rows(run_pairs(tmp_path, posts, comments, cfg))
    assert r["margin"] == pytest.approx(2.0 * math.log(3.0))
    cfg = PairsConfig.model_validate({"margin": {"enabled": True, "scale": 2.0, "max_margin": 1.0}})
    (r,) = rows(run_pairs(tmp_path / "b", posts, comments, cfg))
    assert r["margin"] == 1.0


def test_exact_duplicates_and_contradictions_removed(tmp_path):
    # Two posts with the same subreddit/title/body give the same prompt; identical comment texts -> duplicate.
    same = {"title": "Same title", "selftext": "Same body."}
    posts = [make_post("p1", **same), make_post("p2", **same), make_post("p3", **same)]
    comments = [
        make_comment("a1", "p1", score=3, created=T0, body="first"),
        make_comment("b1", "p1", score=9, created=T0 + 1, body="second"),
        make_comment("a2", "p2", score=3, created=T0, body="first"),
        make_comment("b2", "p2", score=9, created=T0 + 1, body="second"),
    ]
    result = run_pairs(tmp_path, posts, comments, PairsConfig())
    assert len(rows(result)) == 1 and result.drops["dedup/exact_duplicate"] == 1
    # p3 prefers "first" over "second" under the same prompt: a contradiction, both sides dropped.
    comments += [
        make_comment("a3", "p3", score=9, created=T0 + 5, body="first"),
        make_comment("b3", "p3", score=3, created=T0, body="second"),
    ]
    result = run_pairs(tmp_path / "b", posts, comments, PairsConfig())
    assert rows(result) == [] and result.drops["dedup/contradictory"] == 2


def test_dedup_keeps_first_of_distinct_prompts():
    r = {"prompt": "P", "chosen": " a", "rejected": " b"}
    drops: Counter[str] = Counter()
    assert dedup_pairs([r, dict(r), {**r, "prompt": "Q"}], drops) == [r, {**r, "prompt": "Q"}]
    assert drops["dedup/exact_duplicate"] == 1


def test_global_per_post_cap(tmp_path):
    posts, comments = [make_post("p1")], _doubling_thread(5)
    cfg = PairsConfig.model_validate(
        {"same_post": {"max_pairs_per_post": None}, "time_adjacent": {"enabled": True}, "max_pairs_per_post": 3}
    )
    result = run_pairs(tmp_path, posts, comments, cfg)
    assert len(rows(result)) == 3
    # 10 same_post + 4 time_adjacent pairs; the 4 time_adjacent ones duplicate same_post pairs exactly.
    assert result.drops["dedup/exact_duplicate"] == 4 and result.drops["cap/pair_over_global_post_cap"] == 7


# ------------------------------------------------------------------------------------------------- splits
def _many_posts(n: int) -> tuple[list[dict], list[dict]]:
    posts, comments = [], []
    for i in range(n):
        pid = f"q{i}"
        posts.append(make_post(pid, created=T0 + i * HOUR, selftext=f"Story {i}.\n\nTL;DR: short story {i}"))
        comments += [make_comment(f"{pid}a", pid, score=3, created=T0 + i * HOUR + 1),
                     make_comment(f"{pid}b", pid, score=12, created=T0 + i * HOUR + 2),
                     make_comment(f"{pid}c", pid, score=40, created=T0 + i * HOUR + 3)]
    return posts, comments


def test_hash_split_is_disjoint_and_matches_sft(tmp_path):
    posts, comments = _many_posts(60)
    root = write_records(tmp_path / "records", posts, comments)
    cfg = DatasetsConfig.model_validate({"split": {"validation_fraction": 0.2, "test_fraction": 0.2}})
    result = build_datasets(root, tmp_path / "out", cfg, count_tokens=words)
    ids = {s: set(result.pairs[s]["post_id"]) for s in result.pairs}
    assert all(ids[s] for s in ids), "every split should get posts with 60 posts and 20% fractions"
    assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"])
    for s in result.sft:  # a post is in the same split for SFT and for the reward model
        assert set(result.sft[s]["post_id"]) == ids[s]
    assert result.pairs["train"].features == PAIR_FEATURES
    # Deterministic: the same config on another directory gives the same assignment.
    again = build_datasets(root, tmp_path / "out2", cfg, count_tokens=words)
    assert {s: set(again.pairs[s]["post_id"]) for s in again.pairs} == ids


def test_time_split_puts_latest_posts_in_test(tmp_path):
    posts, comments = _many_posts(40)
    root = write_records(tmp_path / "records", posts, comments)
    cfg = DatasetsConfig.model_validate({"split": {"by_time": True, "validation_fraction": 0.1, "test_fraction": 0.25}})
    result = build_datasets(root, tmp_path / "out", cfg, count_tokens=words)
    test_times = [r["chosen_created_utc"] for r in result.pairs["test"]]
    other = [r["chosen_created_utc"] for s in ("train", "validation") for r in result.pairs[s]]
    assert len(set(result.pairs["test"]["post_id"])) == 10
    assert min(test_times) > max(other)


def test_split_config_rejects_fractions_without_train():
    with pytest.raises(ValueError, match="nothing would be left for train"):
        SplitConfig(validation_fraction=0.5, test_fraction=0.5)


def test_pairs_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="min_ratio"):
        PairsConfig.model_validate({"same_post": {"min_ratio": 2}})
