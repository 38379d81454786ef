"""Reddit text -> plain text (data/text.py), the per-rule counts the data card reports, and where those counts
end up (prepare_posts -> build_card -> data_card.md)."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest

from data.card import CardConfig, build_card, render_markdown
from data.prompts import PromptConfig, clean_post, format_response, prepare_posts
from data.text import clean_text, count_entities, plain_text


@pytest.mark.parametrize(
    "raw, plain, rules",
    [
        ("**bold** and *it* and __u__ and ~~gone~~", "bold and it and u and gone", {"markdown_emphasis"}),
        ("***both*** and **a *nested* one**", "both and a nested one", {"markdown_emphasis"}),
        ("see [the video](http://youtu.be/x) and [](/smile)", "see the video and", {"markdown_links"}),
        ("[](http://x.com/a)", "http://x.com/a", {"markdown_links"}),  # a link without text shows its URL
        ("a [film](http://en.wikipedia.org/wiki/Up_(film)) here", "a film here", {"markdown_links"}),
        ("## Update ##\ntext", "Update\ntext", {"markdown_headings"}),
        ("one\n\n---\n\n***\n\ntwo", "one\n\ntwo", {"markdown_rules"}),
        ("run `rm -rf /tmp/x` now", "run rm -rf /tmp/x now", {"markdown_code"}),
        (r"a \*literal\* star", "a *literal* star", {"markdown_escapes"}),
        # kept: bare URLs (with their underscores), list bullets, quote signs, arithmetic, snake_case
        ("http://reddit.com/r/iron_man_3/ and snake_case_name", "http://reddit.com/r/iron_man_3/ and snake_case_name",
         set()),
        ("* item one\n* item two\n> quoted\n2*3*4 = 24", "* item one\n* item two\n> quoted\n2*3*4 = 24", set()),
    ],
)
def test_plain_text_rules(raw: str, plain: str, rules: set[str]) -> None:
    changes: Counter[str] = Counter()
    assert plain_text(clean_text(raw), changes) == plain
    assert set(changes) == rules


def test_entities_are_counted_once_per_text() -> None:
    changes: Counter[str] = Counter()
    count_entities("Tom &amp; Jerry &gt; Itchy &amp; Scratchy", changes)
    count_entities("no entity & no change", changes)
    assert changes == Counter({"html_entities": 1})
    assert clean_text("A &amp; B\r\n\r\n\r\n\r\nC  ") == "A & B\n\nC"


def test_responses_are_plain_text() -> None:
    assert format_response("**TL;DR**: [she left](http://x.com)") == " TL;DR: she left"


def test_clean_post_counts_and_optional_edit_drop() -> None:
    post = "I **really** went home &amp; slept.\n\nEDIT: thanks for the gold!\n\n**TL;DR: went home**\nEdit: typo"
    changes: Counter[str] = Counter()
    body, tldr, rejected = clean_post(post, PromptConfig(), changes)
    assert (body, tldr, rejected) == ("I really went home & slept.\n\nEDIT: thanks for the gold!\n\nEdit: typo",
                                      "went home", None)
    assert changes == Counter({"posts/html_entities": 1, "posts/markdown_emphasis": 1, "posts/tldr_removed": 1,
                               "tldrs/extracted": 1, "tldrs/edit_note_cut_off": 1})
    body, _, _ = clean_post(post, PromptConfig(drop_edit_paragraphs=True), changes)
    assert body == "I really went home & slept." and changes["posts/edit_paragraphs_dropped"] == 1


def test_card_reports_text_changes_of_kept_posts() -> None:
    rows = [
        {"id": "p1", "subreddit": "x", "title": "t", "selftext": "A *b* c.\n\nTL;DR: See title.", "score": 3,
         "created_utc": 1.0, "author": "", "stickied": False, "distinguished": ""},
        {"id": "p2", "subreddit": "x", "title": "t", "selftext": "**TL;DR: only a summary**", "score": 3,
         "created_utc": 2.0, "author": "", "stickied": False, "distinguished": ""},  # dropped: empty body
    ]
    changes: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    posts = prepare_posts(rows, PromptConfig(), None, drops, changes)
    assert list(posts) == ["p1"] and posts["p1"].tldr is None and posts["p1"].tldr_rejected == "points_elsewhere"
    assert drops == Counter({"posts/post_body_too_short": 1})
    assert changes == Counter({"posts/markdown_emphasis": 1, "posts/tldr_removed": 1,
                               "tldrs/rejected_points_elsewhere": 1})  # p2 was dropped: not counted
    empty = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"subreddit": [], "strategy": []})})
    card = build_card(cfg=CardConfig(), config={}, records={}, drops=drops, pairs=empty, cross_post=None,
                      sft=datasets.DatasetDict({"train": datasets.Dataset.from_dict({"score": [], "completion": []})}),
                      split_info={}, text_changes=changes)
    assert card["text_changes"]["tldrs/rejected_points_elsewhere"] == 1
    markdown = render_markdown(card)
    assert "## Text cleaning" in markdown and "| posts/markdown_emphasis | 1 |" in markdown
    assert "hand-checked real posts (heldout3 part): precision 1.000, recall 1.000" in markdown
