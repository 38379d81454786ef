"""A deleted author is not deleted text: posts and comments whose account is gone but whose text is intact are
kept (author stored as DELETED_AUTHOR) and can be pair responses; `[deleted]`/`[removed]` text is still dropped."""

from __future__ import annotations

from collections import Counter

import pytest

from data.pairs import CommentFilterConfig, eligible_comments
from data.prompts import PromptConfig, prepare_posts
from data.records import DELETED_AUTHOR, DeletedContent, comment_from_json, hash_author, post_from_json

POST = {"id": "t3_p1", "subreddit": "tifu", "title": "TIFU by deleting my account", "created_utc": 1.6e9,
        "score": 4200, "num_comments": 2, "selftext": "The story is still here.\n\nTL;DR: account gone, story stays"}
COMMENT = {"id": "c1", "link_id": "t3_p1", "parent_id": "t3_p1", "subreddit": "tifu", "created_utc": 1.6e9 + 60,
           "score": 300, "body": "Great story, still readable."}


@pytest.mark.parametrize("author", ["[deleted]", None])
@pytest.mark.parametrize("salt", ["s", ""])  # an empty salt stores plain names, but never "[deleted]"
def test_deleted_author_with_intact_text_is_kept(author: str | None, salt: str) -> None:
    post = post_from_json(POST | {"author": author}, retrieved_utc=1.7e9, salt=salt, source="dump")
    comment = comment_from_json(COMMENT | {"author": author}, retrieved_utc=1.7e9, salt=salt, source="dump")
    assert post["author"] == comment["author"] == DELETED_AUTHOR == ""
    assert post["selftext"] == POST["selftext"] and comment["body"] == COMMENT["body"]
    assert hash_author("alice", "s") not in ("", "alice") and hash_author("alice", "") == "alice"


@pytest.mark.parametrize("text", ["[deleted]", "[removed]", " [removed] "])
def test_deleted_text_is_still_dropped(text: str) -> None:
    with pytest.raises(DeletedContent):
        post_from_json(POST | {"author": "alice", "selftext": text}, retrieved_utc=0.0, salt="s", source="dump")
    with pytest.raises(DeletedContent):
        comment_from_json(COMMENT | {"author": "[deleted]", "body": text}, retrieved_utc=0.0, salt="s", source="dump")


def test_deleted_authors_are_responses_not_submitters() -> None:
    """A post and a comment both by deleted accounts share the author "": that must not make the comment OP's."""
    post = post_from_json(POST | {"author": "[deleted]"}, retrieved_utc=1.7e9, salt="s", source="dump")
    post |= {"stickied": False, "distinguished": ""}
    comments = [comment_from_json(COMMENT | {"author": "[deleted]"}, retrieved_utc=1.7e9, salt="s", source="dump")]
    prepared = prepare_posts([post], PromptConfig(), None)
    assert prepared["p1"].tldr == "account gone, story stays"
    drops: Counter[str] = Counter()
    grouped = eligible_comments(comments, prepared, CommentFilterConfig(), lambda t: len(t.split()), drops)
    assert [c["id"] for c, _ in grouped["p1"]] == ["c1"] and not drops
