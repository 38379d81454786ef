"""SFT rows: prompt -> author TL;DR, with token-length and score filters, split like the pairs."""

from __future__ import annotations

import pytest

from data.prompts import PromptConfig, prepare_posts
from data.sft_rows import SFT_FEATURES, SFTRowsConfig, build_sft_rows
from data.splits import PostSplitter, SplitConfig


def words(text: str) -> int:
    return len(text.split())


def post(pid: str, selftext: str, score: int = 20) -> dict:
    return {"id": pid, "subreddit": "tifu", "title": f"Title {pid}", "selftext": selftext, "author": "a",
            "created_utc": 1e9 + int(pid[1:]), "score": score, "stickied": False, "distinguished": ""}


ROWS = [
    post("p1", "I broke the vase.\n\nTL;DR: broke a vase, mom mad"),
    post("p2", "No summary in this one."),
    post("p3", "Low score story.\n\nTLDR: nobody cared about it", score=1),
    post("p4", "Story.\n\ntl;dr: ok"),  # 1-token TL;DR
    post("p5", "Story.\n\ntl;dr: " + " ".join(["long"] * 40)),
    post("p6", "Another story about a cat.\n\nTL;DR: the cat won again"),
]


def build(cfg: SFTRowsConfig, split: SplitConfig | None = None):
    prepared = prepare_posts(ROWS, PromptConfig(max_prompt_tokens=100), words)
    splitter = PostSplitter(split or SplitConfig(validation_fraction=0.0, test_fraction=0.0))
    return build_sft_rows(prepared.values(), cfg, words, splitter)


def test_rows_and_filters():
    result = build(SFTRowsConfig(min_post_score=5, min_completion_tokens=2, max_completion_tokens=20))
    train = result.dataset["train"]
    assert train.features == SFT_FEATURES
    assert train["post_id"] == ["p1", "p6"]
    row = train[0]
    assert row["completion"] == " broke a vase, mom mad"  # one leading space, no EOS
    assert row["prompt"].endswith("POST: I broke the vase.\n\nTL;DR:")
    assert row["post_text"] == "Title p1\n\nI broke the vase." and row["score"] == 20
    assert dict(result.drops) == {
        "sft/no_author_tldr": 1,
        "sft/post_score_below_min": 1,
        "sft/completion_too_short": 1,
        "sft/completion_too_long": 1,
    }


def test_filters_off_and_prompt_minimum():
    result = build(SFTRowsConfig(min_completion_tokens=1, max_completion_tokens=100))
    assert len(result.dataset["train"]) == 5  # everything with a TL;DR
    result = build(SFTRowsConfig(min_completion_tokens=1, max_completion_tokens=100, min_prompt_tokens=12))
    assert result.dataset["train"]["post_id"] == ["p6"] and result.drops["sft/prompt_too_short"] == 4


def test_splits_follow_post_ids():
    split = SplitConfig(validation_fraction=0.4, test_fraction=0.4, salt="s")
    result = build(SFTRowsConfig(min_completion_tokens=1, max_completion_tokens=100), split)
    splitter = PostSplitter(split)
    for name, ds in result.dataset.items():
        assert all(splitter.split_of(pid, 0.0) == name for pid in ds["post_id"])
    assert sum(len(ds) for ds in result.dataset.values()) == 5


def test_config_rejects_empty_range():
    with pytest.raises(ValueError, match="min_completion_tokens=9 > max_completion_tokens=3"):
        SFTRowsConfig(min_completion_tokens=9, max_completion_tokens=3)


def test_real_post_tldrs_become_clean_completions():
    """Issue 22 on real posts: `**TL;DR: ...**` lost only its opening markup (a stray `**` ended 20% of the
    completions), an EDIT line right under the TL;DR landed in the completion, and " See title" passed."""
    rows = [
        post("p1", "The long story.\n\n**TL;DR: broke a vase, mom mad**"),
        post("p2", "The long story.\n\nTL;DR: lost my keys in the lake\nEDIT: found them!"),
        post("p3", "The long story.\n\nTL;DR: See title."),
        post("p4", "The long story.\n\nEdit: TL;DR the cat won again"),
    ]
    prepared = prepare_posts(rows, PromptConfig(max_prompt_tokens=100), words)
    splitter = PostSplitter(SplitConfig(validation_fraction=0.0, test_fraction=0.0))
    result = build_sft_rows(prepared.values(), SFTRowsConfig(min_completion_tokens=1), words, splitter)
    train = result.dataset["train"]
    assert dict(zip(train["post_id"], train["completion"])) == {
        "p1": " broke a vase, mom mad", "p2": " lost my keys in the lake", "p4": " the cat won again"}
    assert dict(result.drops) == {"sft/author_tldr_rejected_points_elsewhere": 1}
    assert all("TL;DR" not in r["prompt"].split("POST:")[1][:-len("TL;DR:")] for r in train)
    assert prepared["p2"].body == "The long story.\n\nEDIT: found them!"  # the note stays in the post
