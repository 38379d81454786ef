"""Prompt format, TL;DR extraction variants, and truncation at the last newline within the token budget."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from data.prompts import (
    without_post_body,
    PromptConfig,
    PromptTooLong,
    as_token_counter,
    format_prompt,
    format_response,
    is_tldr_like,
    prepare_post,
    split_tldr,
    strip_leading_tldr,
)


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize(
    "selftext, body, tldr",
    [
        ("I went home.\n\nTL;DR: went home", "I went home.", "went home"),
        ("I went home.\n\nTL;DR went home", "I went home.", "went home"),
        ("I went home.\ntl;dr: went home", "I went home.", "went home"),
        ("I went home.\n\nTLDR: went home", "I went home.", "went home"),
        ("I went home.\n\ntl dr - went home", "I went home.", "went home"),
        ("I went home.\n\nTl;Dr went home", "I went home.", "went home"),
        ("I went home. tl;dr: went home", "I went home.", "went home"),  # after a sentence end
        ("I went home.\n\n**TL;DR:** went home", "I went home.", "went home"),
        ("I went home.\n\nTL:DR\nwent home", "I went home.", "went home"),  # summary on the next line
        ("I went home.\n\nTL;DR: went home\n\nEdit: thanks all!", "I went home.\n\nEdit: thanks all!", "went home"),
        ("TL;DR: went home\n\nSo the story is long.", "So the story is long.", "went home"),  # at the top
        ("I went home.\n\ntl;dr", "I went home.", None),  # a dangling marker is removed, no TL;DR
        ("I read the tl;dr of the article and left.", "I read the tl;dr of the article and left.", None),
        ("Nothing to see here.", "Nothing to see here.", None),
        ("A &amp; B went home.\r\n\r\n\r\nTLDR: A&amp;B home", "A & B went home.", "A&B home"),
    ],
)
def test_split_tldr_variants(selftext, body, tldr):
    assert split_tldr(selftext) == (body, tldr)


def test_only_the_last_marker_opens_the_tldr():
    body, tldr = split_tldr("TL;DR at first: nothing.\n\nStory here.\n\nTLDR: the real summary")
    assert tldr == "the real summary" and body.endswith("Story here.")


def test_format_prompt_exact_template():
    assert format_prompt("relationships", "My\ntitle ", "Body line.\n") == (
        "SUBREDDIT: r/relationships\n\nTITLE: My title\n\nPOST: Body line.\n\nTL;DR:"
    )


def test_without_post_body_keeps_title_and_tldr_marker():
    prompt = format_prompt("tifu", "My (25F) title", "Para one.\n\nPara two with TL;DR: inside.\n\nThree")
    assert without_post_body(prompt) == "SUBREDDIT: r/tifu\n\nTITLE: My (25F) title\n\nTL;DR:"
    with pytest.raises(ValueError, match="PROMPT_TEMPLATE"):
        without_post_body("TITLE: no post section\n\nTL;DR:")


POST = "First paragraph here.\nSecond paragraph is here. It has two sentences.\nThird one"
FIXED = words(format_prompt("x", "t", ""))  # "SUBREDDIT: r/x TITLE: t POST: TL;DR:" = 6 words


@pytest.mark.parametrize(
    "budget, kept",
    [
        (FIXED + 13, "First paragraph here.\nSecond paragraph is here. It has two sentences.\nThird one"),  # fits
        (FIXED + 12, "First paragraph here.\nSecond paragraph is here. It has two sentences."),  # last newline
        (FIXED + 10, "First paragraph here."),  # a newline cut wins over a longer sentence cut
        (FIXED + 2, "First paragraph"),  # no newline or sentence fits: last word boundary
    ],
)
def test_truncation_at_last_fitting_newline(budget, kept):
    prompt = format_prompt("x", "t", POST, count_tokens=words, max_tokens=budget)
    assert prompt == format_prompt("x", "t", kept)
    assert words(prompt) <= budget


def test_truncation_falls_back_to_sentence_end():
    post = "One two three. Four five six. Seven eight nine."
    prompt = format_prompt("x", "t", post, count_tokens=words, max_tokens=FIXED + 7)
    assert prompt == format_prompt("x", "t", "One two three. Four five six.")


def test_prompt_too_long_when_title_alone_exceeds_budget():
    with pytest.raises(PromptTooLong, match="max_tokens=8"):
        format_prompt("x", "a very long title indeed", POST, count_tokens=words, max_tokens=8)


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = [POST, "SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: \n\nTL;DR:"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<eos>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


def test_hf_tokenizer_as_counter_respects_budget():
    tokenizer = _tiny_tokenizer()
    count = as_token_counter(tokenizer)
    whole = format_prompt("x", "t", POST)
    assert count(whole) == len(tokenizer(whole, add_special_tokens=False)["input_ids"])
    budget = count(whole) - 3
    prompt = format_prompt("x", "t", POST, count_tokens=tokenizer, max_tokens=budget)
    assert count(prompt) <= budget and prompt != whole and prompt.endswith("\n\nTL;DR:")
    assert "Third" not in prompt  # cut at a newline: the last line goes first
    with pytest.raises(TypeError, match="count_tokens"):
        as_token_counter(42)


def test_prepare_post_removes_tldr_and_truncates():
    row = {"id": "p1", "subreddit": "x", "title": "t", "selftext": POST + "\n\nTL;DR: secret summary",
           "score": 12, "created_utc": 1.0, "author": "a"}
    post, reason = prepare_post(row, PromptConfig(max_prompt_tokens=FIXED + 10), words)
    assert reason is None and post.tldr == "secret summary" and post.truncated
    assert "secret" not in post.prompt and "secret" not in post.post_text
    assert post.post_text == "t\n\n" + POST  # untruncated: what gold scoring reads
    dropped, reason = prepare_post(row, PromptConfig(max_prompt_tokens=FIXED + 10, truncate_long_posts=False), words)
    assert dropped is None and reason == "post_prompt_too_long"
    empty, reason = prepare_post({**row, "selftext": "TL;DR: only a summary"}, PromptConfig(), words)
    assert empty is None and reason == "post_body_too_short"


def test_tldr_like_comments_and_response_format():
    assert is_tldr_like("tl;dr she left him", max_words=3, require_marker=True)
    assert is_tldr_like("He cheated, so leave.", max_words=10, require_marker=False)
    assert not is_tldr_like("He cheated, so leave.", max_words=10, require_marker=True)
    assert not is_tldr_like("Did he cheat?", max_words=10, require_marker=False)
    assert not is_tldr_like("See https://example.com now", max_words=10, require_marker=False)
    assert not is_tldr_like("One.\n\nTwo.", max_words=10, require_marker=False)
    assert not is_tldr_like(" ".join(["w"] * 11), max_words=10, require_marker=False)
    assert strip_leading_tldr("**TL;DR**: short") == "short"
    assert strip_leading_tldr("tldr") == "tldr"  # nothing left: keep the text
    assert format_response("  hello\n") == " hello"
