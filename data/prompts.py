"""The Stiennon et al. (2020) prompt format, token-budget truncation, and author TL;DR extraction.

    from data.prompts import format_prompt, split_tldr
    body, tldr = split_tldr(post["selftext"])
    prompt = format_prompt("relationships", post["title"], body, count_tokens=len, max_tokens=512)

The reward model, SFT and PPO must all see the *same* prompt for a post, so every builder goes through
`prepare_post` here. Three details matter:

1. The author's TL;DR is removed from the post it summarizes (else the policy learns to copy it, and the
   reward model sees the answer in the prompt); posts and responses are plain text, markdown undone
   (`data.tldr` finds the TL;DR, `data.text` says what the cleaning changes; both count for the data card).
2. A post too long for the budget is cut at its LAST NEWLINE that keeps the whole prompt within
   `max_tokens` (Stiennon et al.); if no newline cut fits, at the last sentence end, then the last word.
3. Token counts come from the caller (`Callable[[str], int]` or a HF tokenizer): the budget is in the
   policy's tokens, which this module must not guess.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from data.records import DELETED_MARKERS
from data.text import clean_text, count_entities, plain_text
from data.tldr import find_tldr, split_tldr

__all__ = ["clean_text", "split_tldr"]  # re-exported: their home is data.text / data.tldr

TokenCounter = Callable[[str], int]

PROMPT_TEMPLATE = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"

# A TL;DR marker opening a COMMENT: "TL;DR:", "tl;dr", "TLDR", "tl dr", "**TL;DR**:", "# TLDR". (A post's
# TL;DR, wherever it stands, is found by data.tldr.)
_CORE = r"\btl[ \t]*[;:,/.\-]?[ \t]*dr\b"
_OPEN = r"(?:[#>*_(\[][ \t]*)*"  # markdown heading / quote / bold / bracket before the marker
_CLOSE = r"[ \t*_)\]]*[:;,.\-\u2013\u2014=>]*[ \t*_]*\s*"  # bold end, then ":" / "-" / "—", then space
_LEADING_MARKER = re.compile(r"\A\s*" + _OPEN + _CORE + _CLOSE, re.IGNORECASE)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")
_URL = re.compile(r"https?://|www\.|\]\(", re.IGNORECASE)


class PromptTooLong(ValueError):
    """Even the title with a minimal post does not fit the token budget."""


class PromptConfig(BaseModel):
    """How posts become prompts; shared by pairs and SFT rows so both see identical prompts."""

    model_config = ConfigDict(extra="forbid")

    max_prompt_tokens: int = Field(
        512, ge=16, description="Token budget of the whole formatted prompt (Stiennon et al. used 512)."
    )
    truncate_long_posts: bool = Field(
        True,
        description="Cut an over-budget post at its last fitting newline; False drops such posts instead.",
    )
    min_body_chars: int = Field(
        1, ge=0, description="Posts whose body (TL;DR removed) is shorter than this are dropped (link posts)."
    )
    exclude_stickied_posts: bool = Field(
        True, description="Drop stickied or distinguished posts (moderator announcements, megathreads)."
    )
    drop_edit_paragraphs: bool = Field(
        False,
        description="Remove paragraphs opening with EDIT:/UPDATE: from prompts. They are the author's text, so "
        "kept by default; an edit often reports the post's reception ('Edit: thanks for the gold'), which "
        "leaks the score into cross_post pairs.",
    )


def as_token_counter(counter: TokenCounter | Any) -> TokenCounter:
    """A HF tokenizer (anything with `.encode`) or a plain callable -> `str -> number of tokens`."""
    if hasattr(counter, "encode"):
        return lambda text: len(counter.encode(text, add_special_tokens=False))
    if callable(counter):
        return counter
    raise TypeError(f"count_tokens must be a callable str -> int or a tokenizer, got {type(counter).__name__}")


def strip_leading_tldr(text: str) -> str:
    """Remove a TL;DR marker that opens a response: the prompt already ends with "TL;DR:"."""
    stripped = _LEADING_MARKER.sub("", text, count=1).strip()
    return stripped if stripped else text.strip()


def has_leading_tldr(text: str) -> bool:
    return _LEADING_MARKER.match(text) is not None


def is_tldr_like(text: str, *, max_words: int, require_marker: bool) -> bool:
    """Is a comment summary-style? (the `tldr_only` rule of same_post pairs)

    Documented rule: a comment that opens with a TL;DR marker is a summary. Otherwise (unless
    `require_marker`) it is one when it is a single paragraph of at most `max_words` words, with no link and
    no quoted line (">"), and does not end in a question mark (a question back to OP is not a summary).
    """
    text = clean_text(text)
    if has_leading_tldr(text):
        return True
    if require_marker:
        return False
    return (
        bool(text)
        and len(text.split()) <= max_words
        and _BLANK_LINE.search(text) is None
        and "\n>" not in f"\n{text}"
        and _URL.search(text) is None
        and not text.rstrip().endswith("?")
    )


def format_response(text: str) -> str:
    """A response as the datasets store it: plain text (data.text), one leading space, no EOS (the trainer
    appends it)."""
    return " " + plain_text(clean_text(text))


def _cut_points(post: str) -> list[list[int]]:
    """Prefix end positions by preference: newlines, then sentence ends, then word boundaries."""
    newlines = [m.start() for m in re.finditer(r"\n", post)]
    sentences = [m.end() for m in _SENTENCE_END.finditer(post)]
    words = [m.start() for m in re.finditer(r"\s", post)]
    return [newlines, sentences, words]


def _largest_fitting(cuts: list[int], fits: Callable[[int], bool]) -> int | None:
    """The largest cut that fits, by binary search (token counts grow with the prefix, up to BPE noise:
    every returned cut has itself been checked)."""
    lo, hi, best = 0, len(cuts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(cuts[mid]):
            best, lo = cuts[mid], mid + 1
        else:
            hi = mid - 1
    return best


def format_prompt(
    subreddit: str,
    title: str,
    post: str,
    *,
    count_tokens: TokenCounter | Any | None = None,
    max_tokens: int | None = None,
) -> str:
    """The Stiennon et al. prompt, `post` cut at its last fitting newline when a budget is given.

    `post` should already have its TL;DR removed (`split_tldr`). Raises `PromptTooLong` when not even the
    first word of the post fits with the title.
    """
    title = " ".join(clean_text(title).split())  # a title is one line
    post = clean_text(post)

    def render(body: str) -> str:
        return PROMPT_TEMPLATE.format(subreddit=subreddit, title=title, post=body)

    if count_tokens is None or max_tokens is None:
        return render(post)
    count = as_token_counter(count_tokens)
    whole = render(post)
    if count(whole) <= max_tokens:
        return whole

    def fits(end: int) -> bool:
        return count(render(post[:end].rstrip())) <= max_tokens

    # 1. newline cuts; 2. sentence ends; 3. word boundaries: the first level with a fitting cut wins.
    for cuts in _cut_points(post):
        end = _largest_fitting([c for c in cuts if post[:c].strip()], fits)
        if end is not None:
            return render(post[:end].rstrip())
    raise PromptTooLong(
        f"prompt for r/{subreddit} title {title[:60]!r} exceeds max_tokens={max_tokens} even with one word of post"
    )


_POST_SECTION = re.compile(r"\n\nPOST: .*?(?=\n\nTL;DR:\Z)", re.DOTALL)


def without_post_body(prompt: str) -> str:
    """The prompt with its POST section removed: "SUBREDDIT: r/x\\n\\nTITLE: ...\\n\\nTL;DR:".

    Why: a short-context warm-up for a from-scratch policy (`policy.sft`): the title states most of the
    facts a TL;DR repeats, and with a few dozen tokens to attend to, a tiny model learns to copy them.
    """
    short, n = _POST_SECTION.subn("", prompt, count=1)
    if n == 0:
        raise ValueError(
            f"prompt does not follow PROMPT_TEMPLATE (no '\\n\\nPOST: ...\\n\\nTL;DR:' ending): {prompt[:80]!r}"
        )
    return short


@dataclass(frozen=True)
class PreparedPost:
    """One post ready for pair/SFT building: its prompt, its TL;DR, and the text gold scoring reads."""

    id: str
    subreddit: str
    title: str
    body: str  # TL;DR removed, plain text, untruncated
    tldr: str | None  # the author's TL;DR (data.tldr), plain text
    prompt: str
    post_text: str  # title + body, untruncated (what `gold_score(post_text, summary)` reads)
    score: int
    created_utc: float
    author: str
    truncated: bool
    tldr_rejected: str | None = None  # why the author's TL;DR is not a summary (data.tldr.rejection)


def make_post_text(title: str, body: str) -> str:
    return f"{' '.join(clean_text(title).split())}\n\n{body}".strip()


_EDIT_PARAGRAPH = re.compile(r"^[\W_]*(?:edit(?:ed)?|update[ds]?)\b[ \t]*(?:#?[ \t]*\d+)?[ \t]*(?:[^\w\s]|$)", re.I)


def drop_edit_paragraphs(body: str) -> tuple[str, int]:
    """`body` without the paragraphs that open with EDIT/UPDATE (PromptConfig.drop_edit_paragraphs)."""
    paragraphs = re.split(r"\n[ \t]*\n", body)
    kept = [p for p in paragraphs if not _EDIT_PARAGRAPH.match(p)]
    return "\n\n".join(kept), len(paragraphs) - len(kept)


def clean_post(
    selftext: str, cfg: PromptConfig, changes: Counter[str] | None = None
) -> tuple[str, str | None, str | None]:
    """Raw selftext -> (plain body without the TL;DR, author's TL;DR or None, why a TL;DR was rejected).

    `changes` gets one count per rule that changed this post, "posts/<rule>" (the data.text rules,
    `tldr_removed` for TL;DR spans taken out, `edit_paragraphs_dropped`), and the TL;DR's outcome,
    "tldrs/extracted" (+ "tldrs/edit_note_cut_off") or "tldrs/rejected_<reason>".
    """
    per_post: Counter[str] = Counter()
    count_entities(selftext, per_post)
    found = find_tldr(selftext, per_post)
    body = found.body
    per_post["tldr_removed"] = found.spans_removed
    if cfg.drop_edit_paragraphs:
        body, per_post["edit_paragraphs_dropped"] = drop_edit_paragraphs(body)
    if changes is not None:
        changes.update({f"posts/{k}": 1 for k, v in per_post.items() if v})
        if found.tldr is not None:
            changes.update({"tldrs/extracted": 1, "tldrs/edit_note_cut_off": int(found.notes_cut)})
        elif found.rejected is not None:
            changes[f"tldrs/rejected_{found.rejected}"] += 1
    return body, found.tldr, found.rejected


def prepare_post(
    row: Mapping[str, Any],
    cfg: PromptConfig,
    count_tokens: TokenCounter | None,
    changes: Counter[str] | None = None,
) -> tuple[PreparedPost | None, str | None]:
    """A post record -> (PreparedPost, None), or (None, drop reason) for a post that cannot be a prompt.

    `changes` counts what text cleaning changed in the post (`clean_post`) if it is kept, for the data card."""
    cleaned: Counter[str] = Counter()
    body, tldr, rejected = clean_post(row["selftext"] or "", cfg, cleaned)
    if len(body) < cfg.min_body_chars:
        return None, "post_body_too_short"
    untruncated = format_prompt(row["subreddit"], row["title"], body)
    prompt = untruncated
    if count_tokens is not None:
        if not cfg.truncate_long_posts and count_tokens(untruncated) > cfg.max_prompt_tokens:
            return None, "post_prompt_too_long"
        try:
            prompt = format_prompt(
                row["subreddit"], row["title"], body, count_tokens=count_tokens, max_tokens=cfg.max_prompt_tokens
            )
        except PromptTooLong:
            return None, "post_prompt_too_long"
    post = PreparedPost(
        id=row["id"],
        subreddit=row["subreddit"],
        title=row["title"],
        body=body,
        tldr=tldr,
        prompt=prompt,
        post_text=make_post_text(row["title"], body),
        score=int(row["score"]),
        created_utc=float(row["created_utc"]),
        author=row["author"] or "",
        truncated=prompt != untruncated,
        tldr_rejected=rejected,
    )
    if changes is not None:
        changes.update(cleaned)
    return post, None


def prepare_posts(
    rows: list[Mapping[str, Any]],
    cfg: PromptConfig,
    count_tokens: TokenCounter | Any | None,
    drops: Counter[str] | None = None,
    changes: Counter[str] | None = None,
) -> dict[str, PreparedPost]:
    """All post records -> {post id: PreparedPost}; each dropped post is counted as `posts/<reason>`, and
    what text cleaning changed in the kept ones in `changes` (see `clean_post`)."""
    drops = drops if drops is not None else Counter()
    count = as_token_counter(count_tokens) if count_tokens is not None else None
    prepared: dict[str, PreparedPost] = {}
    for row in tqdm(rows, desc="prompts", unit="post", disable=len(rows) < 2000):
        if (row["selftext"] or "").strip() in DELETED_MARKERS:
            drops["posts/deleted"] += 1
            continue
        if cfg.exclude_stickied_posts and (row["stickied"] or row["distinguished"]):
            drops["posts/stickied_or_distinguished"] += 1
            continue
        post, reason = prepare_post(row, cfg, count, changes)
        if post is None:
            drops[f"posts/{reason}"] += 1
            continue
        prepared[post.id] = post
    return prepared
