"""Preference pairs from Reddit score differences: the rules, one config option each.

    python -m pipelines build-data --config configs/demo.yaml      # pipelines.build.build_datasets runs them
    from data.pairs import PairsConfig, build_pairs
    result = build_pairs(prepared_posts, comment_records, PairsConfig(), count_tokens=len, splitter=splitter)

Three strategies turn upvotes into preferences; every rule below is a config option and every row it
removes is counted by reason (`drops`, shown in the data card):

- `same_post` (SHP, Ethayarajh et al. 2022): two top-level comments on one post; the preferred one has at
  least `min_score_ratio` times the score AND was written no earlier than the other, so the longer
  exposure of early comments cannot explain its lead. Both comments score >= 2, the post >= 10, at most 5
  pairs per post; deleted, moderator (distinguished), stickied and OP comments are excluded.
- `time_adjacent` (DialogRPT, Gao et al. 2020): sibling top-level comments sorted by time; each
  consecutive pair posted within `max_hour_gap` hours compares, the higher score wins.
- `cross_post`: author TL;DRs of two posts in one subreddit, posted within `window_hours`, compared by
  subreddit-normalized post score. The two sides have DIFFERENT prompts, which the pair schema cannot
  hold, so these pairs go to a separate dataset (`pairs_cross_post`) with `rejected_prompt`,
  `rejected_post_id` and `rejected_post_text` columns; the main `pairs` dataset keeps one prompt per pair.

Splits are by post id (`data.splits`), shared with the SFT rows; exact duplicates are removed, and a
global per-post cap keeps a few long threads from dominating.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

import datasets
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from data.prompts import (
    PreparedPost,
    TokenCounter,
    as_token_counter,
    format_response,
    is_tldr_like,
    strip_leading_tldr,
)
from data.records import DELETED_MARKERS
from data.splits import PostSplitter, hash_unit, split_dataset_dict

PAIR_FEATURES = datasets.Features(
    {
        "pair_id": datasets.Value("string"),
        "post_id": datasets.Value("string"),
        "subreddit": datasets.Value("string"),
        "strategy": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "chosen": datasets.Value("string"),
        "rejected": datasets.Value("string"),
        "chosen_id": datasets.Value("string"),
        "rejected_id": datasets.Value("string"),
        "chosen_score": datasets.Value("int64"),
        "rejected_score": datasets.Value("int64"),
        "score_ratio": datasets.Value("float64"),
        "margin": datasets.Value("float64"),
        "chosen_created_utc": datasets.Value("float64"),
        "rejected_created_utc": datasets.Value("float64"),
        "post_text": datasets.Value("string"),
    }
)
# cross_post pairs: the main columns describe the chosen side's post; these the rejected side's.
CROSS_POST_FEATURES = datasets.Features(
    {
        **PAIR_FEATURES,
        "rejected_post_id": datasets.Value("string"),
        "rejected_prompt": datasets.Value("string"),
        "rejected_post_text": datasets.Value("string"),
    }
)


# ----------------------------------------------------------------------------------------------- configs
class CommentFilterConfig(BaseModel):
    """Which comments may be a response at all (shared by `same_post` and `time_adjacent`)."""

    model_config = ConfigDict(extra="forbid")

    exclude_distinguished: bool = Field(True, description="Drop moderator/admin (distinguished) comments.")
    exclude_stickied: bool = Field(True, description="Drop stickied comments (bots, moderator notes).")
    exclude_submitter: bool = Field(True, description="Drop comments by the post's author (OP).")
    strip_tldr_marker: bool = Field(
        True, description="Remove a TL;DR marker opening a comment: the prompt already ends with 'TL;DR:'."
    )
    min_response_tokens: int = Field(1, ge=1, description="Drop comments shorter than this many tokens.")
    max_response_tokens: int = Field(
        256, ge=1, description="Drop comments longer than this (the reward trainer drops over-long pairs)."
    )


class SamePostConfig(BaseModel):
    """SHP rules: two top-level comments on one post, the later-written one scoring >= ratio x higher."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Build same_post pairs.")
    min_score_ratio: float = Field(2.0, ge=1.0, description="Preferred score / other score must be >= this.")
    min_comment_score: int = Field(2, ge=1, description="Both comments must score at least this.")
    min_post_score: int = Field(10, description="The post must score at least this.")
    max_pairs_per_post: int | None = Field(5, ge=1, description="At most this many pairs per post (None: all).")
    cap_selection: Literal["random", "largest_ratio"] = Field(
        "random",
        description="Which pairs survive the per-post cap: a seeded hash order, or the largest score ratios.",
    )
    require_chosen_later: bool = Field(
        True,
        description="The preferred comment must be written no earlier than the other (SHP's timestamp rule).",
    )
    tldr_only: bool = Field(False, description="Keep only summary-style comments (data.prompts.is_tldr_like).")
    tldr_max_words: int = Field(60, ge=1, description="tldr_only: a marker-less summary has at most this many words.")
    tldr_require_marker: bool = Field(
        False, description="tldr_only: accept only comments that open with a TL;DR marker."
    )


class TimeAdjacentConfig(BaseModel):
    """DialogRPT rule: consecutive (by time) top-level siblings posted close together; higher score wins."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Build time_adjacent pairs.")
    max_hour_gap: float = Field(1.0, gt=0.0, description="Consecutive comments further apart (hours) are skipped.")
    min_score_gap: int = Field(1, ge=1, description="The winner must score at least this much more.")
    min_score_ratio: float = Field(
        1.0, ge=1.0, description="Minimum score ratio, scores floored at 1 (1.0 disables the ratio test)."
    )
    min_post_score: int = Field(0, description="The post must score at least this.")
    max_pairs_per_post: int | None = Field(None, ge=1, description="At most this many pairs per post (None: all).")


class CrossPostConfig(BaseModel):
    """Author TL;DRs of different posts compared by subreddit-normalized post score (separate dataset)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Build cross_post pairs (written to out_dir/pairs_cross_post).")
    window_hours: float = Field(24.0, gt=0.0, description="Only posts created within this many hours compare.")
    normalization: Literal["zlog", "percentile"] = Field(
        "zlog", description="Per-subreddit score normalization: z-score of log1p(score), or percentile rank."
    )
    min_normalized_gap: float = Field(
        0.5, ge=0.0, description="The normalized scores must differ by at least this (z units or percentile)."
    )
    min_score_ratio: float = Field(
        1.0, ge=1.0, description="The higher raw score must also be at least this many times the lower (scores floored "
        "at 1; SHP uses 2): small ratios are mostly noise of timing and audience. 1.0 disables the test.",
    )
    max_partners: int = Field(3, ge=1, description="Each post is compared with at most this many later posts.")
    min_subreddit_posts: int = Field(
        10, ge=2, description="Subreddits with fewer posts having a TL;DR are skipped (normalization unstable)."
    )


class MarginConfig(BaseModel):
    """Optional Bradley-Terry margin: the reward gap the model is asked to exceed (TRL's `margin` column)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Write margin = scale * ln(score_ratio); 0 when disabled.")
    scale: float = Field(1.0, ge=0.0, description="Factor on the natural log of the score ratio.")
    max_margin: float | None = Field(None, ge=0.0, description="Clip margins above this (None: no clip).")


class PairsConfig(BaseModel):
    """All pair strategies, their shared comment filter, margins and the global per-post cap."""

    model_config = ConfigDict(extra="forbid")

    comments: CommentFilterConfig = Field(default_factory=CommentFilterConfig, description="Comment filter.")
    same_post: SamePostConfig = Field(default_factory=SamePostConfig, description="SHP-style pairs.")
    time_adjacent: TimeAdjacentConfig = Field(default_factory=TimeAdjacentConfig, description="DialogRPT pairs.")
    cross_post: CrossPostConfig = Field(default_factory=CrossPostConfig, description="Author-TL;DR pairs.")
    margin: MarginConfig = Field(default_factory=MarginConfig, description="Margin column.")
    max_pairs_per_post: int | None = Field(
        None, ge=1, description="Cap on pairs per post over all strategies, after dedup (None: no cap)."
    )
    seed: int = Field(0, description="Seed of the hash order used by the per-post caps.")


# ----------------------------------------------------------------------------------------------- building
@dataclass(frozen=True)
class Response:
    """One side of a pair: a comment (or an author TL;DR), formatted as the datasets store it."""

    id: str
    text: str  # one leading space, no EOS
    score: int
    created_utc: float


@dataclass
class PairsResult:
    pairs: datasets.DatasetDict
    cross_post: datasets.DatasetDict | None
    drops: Counter[str] = field(default_factory=Counter)


def score_ratio(chosen: int, rejected: int) -> float:
    """Score ratio with scores floored at 1, so it is defined (and >= 1) for zero or negative scores too."""
    return max(chosen, 1) / max(rejected, 1)


def pair_margin(ratio: float, cfg: MarginConfig) -> float:
    if not cfg.enabled:
        return 0.0
    margin = cfg.scale * math.log(ratio)
    return min(margin, cfg.max_margin) if cfg.max_margin is not None else margin


def _pair_row(strategy: str, post: PreparedPost, chosen: Response, rejected: Response, cfg: MarginConfig) -> dict:
    ratio = score_ratio(chosen.score, rejected.score)
    key = f"{strategy}:{post.id}:{chosen.id}:{rejected.id}"
    return {
        "pair_id": hashlib.sha256(key.encode()).hexdigest()[:16],
        "post_id": post.id,
        "subreddit": post.subreddit,
        "strategy": strategy,
        "prompt": post.prompt,
        "chosen": chosen.text,
        "rejected": rejected.text,
        "chosen_id": chosen.id,
        "rejected_id": rejected.id,
        "chosen_score": chosen.score,
        "rejected_score": rejected.score,
        "score_ratio": ratio,
        "margin": pair_margin(ratio, cfg),
        "chosen_created_utc": chosen.created_utc,
        "rejected_created_utc": rejected.created_utc,
        "post_text": post.post_text,
    }


def _cap(rows: list[dict], limit: int | None, how: str, seed: int) -> tuple[list[dict], int]:
    """Keep at most `limit` rows: a seeded hash order (unbiased, deterministic) or the largest ratios."""
    if limit is None or len(rows) <= limit:
        return rows, 0
    if how == "largest_ratio":
        ordered = sorted(rows, key=lambda r: (-r["score_ratio"], r["pair_id"]))
    else:
        ordered = sorted(rows, key=lambda r: hash_unit(r["pair_id"], f"cap-{seed}"))
    return ordered[:limit], len(rows) - limit


def comment_drop_reason(comment: Mapping[str, Any], cfg: CommentFilterConfig) -> str | None:
    """Why a comment cannot be a response (before any strategy's own rules), or None."""
    if not comment["parent_id"].startswith("t3_"):
        return "not_top_level"  # its context is another comment, which the post-only prompt lacks
    if comment["body"].strip() in DELETED_MARKERS:  # a deleted author alone is kept (data.records.DELETED_AUTHOR)
        return "deleted"
    if cfg.exclude_distinguished and comment["distinguished"]:
        return "distinguished"
    if cfg.exclude_stickied and comment["stickied"]:
        return "stickied"
    if cfg.exclude_submitter and comment["is_submitter"]:
        return "submitter"
    return None


def eligible_comments(
    comments: Iterable[Mapping[str, Any]],
    posts: Mapping[str, PreparedPost],
    cfg: CommentFilterConfig,
    count_tokens: TokenCounter,
    drops: Counter[str],
) -> dict[str, list[tuple[Mapping[str, Any], Response]]]:
    """Comments grouped by post id, each with its formatted Response; drops counted as `comments/<reason>`."""
    by_post: dict[str, list[tuple[Mapping[str, Any], Response]]] = defaultdict(list)
    for c in tqdm(comments, desc="comments", unit="comment", mininterval=2.0):
        reason = comment_drop_reason(c, cfg)
        post = posts.get(c["post_id"])
        if reason is None and post is None:
            reason = "post_dropped"
        if reason is None and cfg.exclude_submitter and post.author and c["author"] == post.author:
            reason = "submitter"  # is_submitter can be missing in dumps; the author hash still tells
        if reason is None:
            text = strip_leading_tldr(c["body"]) if cfg.strip_tldr_marker else c["body"]
            text = format_response(text)
            n = count_tokens(text)
            if n < cfg.min_response_tokens:
                reason = "response_too_short"
            elif n > cfg.max_response_tokens:
                reason = "response_too_long"
        if reason is not None:
            drops[f"comments/{reason}"] += 1
            continue
        by_post[c["post_id"]].append((c, Response(c["id"], text, int(c["score"]), float(c["created_utc"]))))
    for group in by_post.values():
        group.sort(key=lambda cr: (cr[1].created_utc, cr[1].id))
    return by_post


def same_post_pairs(
    post: PreparedPost,
    comments: list[tuple[Mapping[str, Any], Response]],
    cfg: SamePostConfig,
    margin: MarginConfig,
    seed: int,
    drops: Counter[str],
) -> list[dict]:
    """SHP pairs of one post (comments sorted by time); each rejected candidate counted by its first failed rule."""
    d = "same_post/"
    if post.score < cfg.min_post_score:
        drops[d + "post_score_below_min"] += 1
        return []
    keep: list[Response] = []
    for c, r in comments:
        if r.score < cfg.min_comment_score:
            drops[d + "comment_score_below_min"] += 1
        elif cfg.tldr_only and not is_tldr_like(
            c["body"], max_words=cfg.tldr_max_words, require_marker=cfg.tldr_require_marker
        ):
            drops[d + "comment_not_tldr_like"] += 1
        else:
            keep.append(r)
    if len(keep) < 2:
        drops[d + "post_fewer_than_2_comments"] += 1
        return []
    rows = []
    for i, a in enumerate(keep):
        for b in keep[i + 1 :]:
            hi, lo = (a, b) if a.score >= b.score else (b, a)
            if score_ratio(hi.score, lo.score) < cfg.min_score_ratio or hi.score == lo.score:
                drops[d + "pair_score_ratio_below_min"] += 1
            elif cfg.require_chosen_later and hi.created_utc < lo.created_utc:
                drops[d + "pair_preferred_written_earlier"] += 1
            elif hi.text == lo.text:
                drops[d + "pair_identical_responses"] += 1
            else:
                rows.append(_pair_row("same_post", post, hi, lo, margin))
    rows, over = _cap(rows, cfg.max_pairs_per_post, cfg.cap_selection, seed)
    drops[d + "pair_over_post_cap"] += over
    return rows


def time_adjacent_pairs(
    post: PreparedPost,
    comments: list[tuple[Mapping[str, Any], Response]],
    cfg: TimeAdjacentConfig,
    margin: MarginConfig,
    seed: int,
    drops: Counter[str],
) -> list[dict]:
    """DialogRPT pairs of one post: consecutive siblings (sorted by time) within `max_hour_gap` hours."""
    d = "time_adjacent/"
    if post.score < cfg.min_post_score:
        drops[d + "post_score_below_min"] += 1
        return []
    rows = []
    for (_, a), (_, b) in zip(comments, comments[1:]):
        hi, lo = (a, b) if a.score >= b.score else (b, a)
        if b.created_utc - a.created_utc > cfg.max_hour_gap * 3600.0:
            drops[d + "pair_time_gap_above_max"] += 1
        elif hi.score - lo.score < cfg.min_score_gap or score_ratio(hi.score, lo.score) < cfg.min_score_ratio:
            drops[d + "pair_score_difference_below_min"] += 1
        elif hi.text == lo.text:
            drops[d + "pair_identical_responses"] += 1
        else:
            rows.append(_pair_row("time_adjacent", post, hi, lo, margin))
    rows, over = _cap(rows, cfg.max_pairs_per_post, "random", seed)
    drops[d + "pair_over_post_cap"] += over
    return rows


def normalized_scores(scores: list[int], how: str) -> list[float]:
    """Per-subreddit score normalization, so a gap means the same in a big and a small community."""
    if how == "percentile":
        order = sorted(range(len(scores)), key=lambda i: scores[i])
        ranks = [0.0] * len(scores)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
                j += 1
            for k in range(i, j + 1):
                ranks[order[k]] = (i + j) / 2 / max(len(scores) - 1, 1)
            i = j + 1
        return ranks
    logs = [math.log1p(max(s, 0)) for s in scores]
    mean = sum(logs) / len(logs)
    std = math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs)) or 1.0
    return [(x - mean) / std for x in logs]


def cross_post_pairs(
    posts: Iterable[PreparedPost],
    cfg: CrossPostConfig,
    comment_cfg: CommentFilterConfig,
    margin: MarginConfig,
    count_tokens: TokenCounter,
    splitter: PostSplitter,
    drops: Counter[str],
) -> list[dict]:
    """Pairs of (post, author TL;DR) items of one subreddit and one split, created within `window_hours`.

    Steps: 1. keep posts with a TL;DR of acceptable length; 2. normalize scores per subreddit;
    3. within each (subreddit, split), sorted by time, compare each post with its next `max_partners`
    posts inside the window; the higher normalized score is chosen. Both posts lie in one split.
    """
    d = "cross_post/"
    by_sub: dict[str, list[tuple[PreparedPost, Response]]] = defaultdict(list)
    for p in posts:  # 1.
        if p.tldr is None:
            drops[d + "post_no_author_tldr"] += 1
            continue
        text = format_response(p.tldr)
        n = count_tokens(text)
        if not comment_cfg.min_response_tokens <= n <= comment_cfg.max_response_tokens:
            drops[d + "tldr_length_out_of_range"] += 1
            continue
        by_sub[p.subreddit].append((p, Response(p.id, text, p.score, p.created_utc)))
    rows = []
    for sub, items in sorted(by_sub.items()):
        if len(items) < cfg.min_subreddit_posts:
            drops[d + "subreddit_too_few_posts"] += len(items)
            continue
        # 2.
        norm = dict(zip((p.id for p, _ in items), normalized_scores([p.score for p, _ in items], cfg.normalization)))
        groups: dict[str, list[tuple[PreparedPost, Response]]] = defaultdict(list)
        for item in items:
            groups[splitter.split_of(item[0].id, item[0].created_utc)].append(item)
        for group in groups.values():  # 3.
            group.sort(key=lambda it: (it[0].created_utc, it[0].id))
            for i, (pa, ra) in enumerate(group):
                for pb, rb in group[i + 1 : i + 1 + cfg.max_partners]:
                    if pb.created_utc - pa.created_utc > cfg.window_hours * 3600.0:
                        drops[d + "pair_outside_window"] += 1
                        break
                    if abs(norm[pa.id] - norm[pb.id]) < cfg.min_normalized_gap or pa.score == pb.score:
                        drops[d + "pair_normalized_gap_below_min"] += 1
                        continue
                    if score_ratio(max(pa.score, pb.score), min(pa.score, pb.score)) < cfg.min_score_ratio:
                        drops[d + "pair_score_ratio_below_min"] += 1
                        continue
                    (pc, rc), (pr, rr) = ((pa, ra), (pb, rb)) if norm[pa.id] > norm[pb.id] else ((pb, rb), (pa, ra))
                    row = _pair_row("cross_post", pc, rc, rr, margin)
                    row.update(rejected_post_id=pr.id, rejected_prompt=pr.prompt, rejected_post_text=pr.post_text)
                    rows.append(row)
    return rows


def dedup_pairs(rows: list[dict], drops: Counter[str]) -> list[dict]:
    """Drop exact duplicates (same prompt(s), chosen, rejected: first kept) and contradictions (the same
    two responses under one prompt, preferred both ways: both dropped)."""

    def key(r: dict, swap: bool = False) -> tuple:
        a, b = (r["rejected"], r["chosen"]) if swap else (r["chosen"], r["rejected"])
        pb = r.get("rejected_prompt", r["prompt"])
        return (r["prompt"], pb, a, b) if not swap else (pb, r["prompt"], a, b)

    seen: set[tuple] = set()
    unique = []
    for r in rows:
        if key(r) in seen:
            drops["dedup/exact_duplicate"] += 1
            continue
        seen.add(key(r))
        unique.append(r)
    contradicted = {key(r) for r in unique if key(r, swap=True) in seen}
    drops["dedup/contradictory"] += len(contradicted)
    return [r for r in unique if key(r) not in contradicted]


def _to_dataset_dict(rows: list[dict], features: datasets.Features, splitter: PostSplitter,
                     created: Mapping[str, float]) -> datasets.DatasetDict:
    return split_dataset_dict(rows, features, lambda r: splitter.split_of(r["post_id"], created[r["post_id"]]))


def build_pairs(
    posts: Mapping[str, PreparedPost],
    comments: Iterable[Mapping[str, Any]],
    cfg: PairsConfig,
    count_tokens: TokenCounter | Any,
    splitter: PostSplitter,
    grouped: Mapping[str, list[tuple[Mapping[str, Any], Response]]] | None = None,
) -> PairsResult:
    """Prepared posts + comment records -> pairs (and cross_post pairs), every dropped candidate counted.

    Steps: 1. filter comments and group them by post; 2. same_post and time_adjacent pairs per post;
    3. dedup; 4. global per-post cap; 5. split by post id; 6. cross_post pairs (separate dataset).
    `grouped`: the output of `eligible_comments` for the same `cfg.comments`, to skip step 1 when building
    variants of one config (its comment drops are then not counted again).
    """
    count = as_token_counter(count_tokens)
    drops: Counter[str] = Counter()
    rows: list[dict] = []
    if cfg.same_post.enabled or cfg.time_adjacent.enabled:
        by_post = grouped  # 1.
        if by_post is None:
            by_post = eligible_comments(comments, posts, cfg.comments, count, drops)
        for post_id in tqdm(sorted(by_post), desc="pairs", unit="post", mininterval=2.0):  # 2.
            post = posts[post_id]
            if cfg.same_post.enabled:
                rows += same_post_pairs(post, by_post[post_id], cfg.same_post, cfg.margin, cfg.seed, drops)
            if cfg.time_adjacent.enabled:
                rows += time_adjacent_pairs(post, by_post[post_id], cfg.time_adjacent, cfg.margin, cfg.seed, drops)
    rows = dedup_pairs(rows, drops)  # 3.
    if cfg.max_pairs_per_post is not None:  # 4.
        grouped: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            grouped[r["post_id"]].append(r)
        rows = []
        for post_id in sorted(grouped):
            kept, over = _cap(grouped[post_id], cfg.max_pairs_per_post, "random", cfg.seed)
            drops["cap/pair_over_global_post_cap"] += over
            rows += kept
    created = {pid: p.created_utc for pid, p in posts.items()}
    pairs = _to_dataset_dict(rows, PAIR_FEATURES, splitter, created)  # 5.
    cross = None
    if cfg.cross_post.enabled:  # 6.
        cross_rows = cross_post_pairs(
            [posts[k] for k in sorted(posts)], cfg.cross_post, cfg.comments, cfg.margin, count, splitter, drops
        )
        cross = _to_dataset_dict(dedup_pairs(cross_rows, drops), CROSS_POST_FEATURES, splitter, created)
    return PairsResult(pairs=pairs, cross_post=cross, drops=+drops)


