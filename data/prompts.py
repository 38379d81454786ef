"""The Stiennon et al. (2020) prompt format, token-budget truncation, and author TL;DR extraction.

    from data.prompts import format_prompt, split_tldr
    body, tldr = split_tldr(post["selftext"])
    prompt = format_prompt("relationships", post["title"], body, count_tokens=len, max_tokens=512)

The reward model, SFT and PPO must all see the *same* prompt for a post, so every builder goes through
`prepare_post` here. Three details matter:

1. The author's TL;DR is removed from the post it summarizes (else the policy learns to copy it, and the
   reward model sees the answer in the prompt).
2. A post too long for the budget is cut at its LAST NEWLINE that keeps the whole prompt within
   `max_tokens` (Stiennon et al.); if no newline cut fits, at the last sentence end, then the last word.
3. Token counts come from the caller (`Callable[[str], int]` or a HF tokenizer): the budget is in the
   policy's tokens, which this module must not guess.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from data.records import DELETED_MARKERS

TokenCounter = Callable[[str], int]

PROMPT_TEMPLATE = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"

# A TL;DR marker: "TL;DR:", "TL;DR", "tl;dr", "TLDR", "tl dr", "TL:DR", "tl,dr", "TL/DR", "**TL;DR**:", "# TLDR".
_CORE = r"\btl[ \t]*[;:,/.\-]?[ \t]*dr\b"
_OPEN = r"(?:[#>*_(\[][ \t]*)*"  # markdown heading / quote / bold / bracket before the marker
_CLOSE = r"[ \t*_)\]]*[:;,.\-\u2013\u2014=>]*[ \t*_]*\s*"  # bold end, then ":" / "-" / "—", then space
# The marker starts a line, or follows the end of a sentence ("... so yeah. tl;dr: ...").
_POST_MARKER = re.compile(
    r"(?:^[ \t]*|(?<=[.!?)\]\"'*])[ \t]+)" + _OPEN + _CORE + _CLOSE, re.IGNORECASE | re.MULTILINE
)
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


def as_token_counter(counter: TokenCounter | Any) -> TokenCounter:
    """A HF tokenizer (anything with `.encode`) or a plain callable -> `str -> number of tokens`."""
    if hasattr(counter, "encode"):
        return lambda text: len(counter.encode(text, add_special_tokens=False))
    if callable(counter):
        return counter
    raise TypeError(f"count_tokens must be a callable str -> int or a tokenizer, got {type(counter).__name__}")


def clean_text(text: str) -> str:
    """Undo Reddit's HTML escaping, normalize newlines, drop trailing spaces and runs of blank lines."""
    text = html.unescape(text).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_tldr(selftext: str) -> tuple[str, str | None]:
    """Split a post into (body, author's TL;DR or None).

    Rule: the LAST TL;DR marker that starts a line or follows a sentence end opens the TL;DR; the TL;DR is
    the paragraph after it (up to the next blank line). The body is everything else, so a trailing
    "Edit: ..." after the TL;DR stays in the body, and a TL;DR written at the top of a post also works.
    A marker followed by nothing is removed and gives `None`.
    """
    text = clean_text(selftext)
    matches = list(_POST_MARKER.finditer(text))
    if not matches:
        return text, None
    marker = matches[-1]
    before, rest = text[: marker.start()].rstrip(), text[marker.end() :].lstrip()
    blank = _BLANK_LINE.search(rest)
    tldr, after = (rest[: blank.start()], rest[blank.end() :]) if blank else (rest, "")
    tldr = tldr.strip()
    body = "\n\n".join(part for part in (before, after.strip()) if part)
    return body, (tldr or None)


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
    """A response as the datasets store it: cleaned, one leading space, no EOS (the trainer appends it)."""
    return " " + clean_text(text)


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
    body: str  # TL;DR removed, untruncated
    tldr: str | None
    prompt: str
    post_text: str  # title + body, untruncated (what `gold_score(post_text, summary)` reads)
    score: int
    created_utc: float
    author: str
    truncated: bool


def make_post_text(title: str, body: str) -> str:
    return f"{' '.join(clean_text(title).split())}\n\n{body}".strip()


def prepare_post(
    row: Mapping[str, Any], cfg: PromptConfig, count_tokens: TokenCounter | None
) -> tuple[PreparedPost | None, str | None]:
    """A post record -> (PreparedPost, None), or (None, drop reason) for a post that cannot be a prompt."""
    body, tldr = split_tldr(row["selftext"] or "")
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
    )
    return post, None


def prepare_posts(
    rows: list[Mapping[str, Any]],
    cfg: PromptConfig,
    count_tokens: TokenCounter | Any | None,
    drops: Counter[str] | None = None,
) -> dict[str, PreparedPost]:
    """All post records -> {post id: PreparedPost}; each dropped post is counted as `posts/<reason>`."""
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
        post, reason = prepare_post(row, cfg, count)
        if post is None:
            drops[f"posts/{reason}"] += 1
            continue
        prepared[post.id] = post
    return prepared
