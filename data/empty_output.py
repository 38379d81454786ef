"""A build that kept nothing is an error, not an exit 0: name the rules that dropped everything.

On real data a filter tuned on the simulator can drop every row (posts without TL;DRs, threads with one comment,
scores below a floor). Downstream stages would then fail far away, or train on nothing. `check_not_empty` turns
the data card's drop counts into one message: what came in, what each rule dropped, and the overrides to try.
"""

from __future__ import annotations

from typing import Mapping

# drop-reason prefix -> the settings that decide it (dotted keys a user can override)
HINTS: dict[str, str] = {
    "posts/": "data.prompt.min_body_chars, data.prompt.exclude_stickied_posts, data.prompt.truncate_long_posts",
    "sft/": "data.sft.min_completion_tokens, data.sft.max_completion_tokens, data.sft.min_post_score",
    "comments/": "data.pairs.comments.* (exclude_submitter, min_response_tokens, max_response_tokens)",
    "same_post/": "data.pairs.same_post.* (min_post_score, min_comment_score, min_score_ratio, "
    "require_chosen_later, tldr_only)",
    "time_adjacent/": "data.pairs.time_adjacent.*",
    "cross_post/": "data.pairs.cross_post.* (enabled, window_hours, min_normalized_gap, min_subreddit_posts)",
    "cap/": "data.pairs.max_pairs_per_post",
}


class EmptyOutput(ValueError):
    """A data build produced no rows of a kind the next stages need."""


def _biggest(drops: Mapping[str, int], prefixes: tuple[str, ...], n: int = 6) -> list[tuple[str, int]]:
    hits = [(k, v) for k, v in drops.items() if k.startswith(prefixes) and v > 0]
    return sorted(hits, key=lambda kv: -kv[1])[:n]


def _hints(reasons: list[tuple[str, int]]) -> list[str]:
    seen: list[str] = []
    for reason, _ in reasons:
        for prefix, keys in HINTS.items():
            if reason.startswith(prefix) and keys not in seen:
                seen.append(keys)
    return seen


def empty_output_message(what: str, records: Mapping[str, int], drops: Mapping[str, int],
                         prefixes: tuple[str, ...], extra: str = "") -> str:
    """One readable message: `what` is empty, from these records, dropped by these rules, try these keys."""
    reasons = _biggest(drops, prefixes)
    dropped = ", ".join(f"{k} {v}" for k, v in reasons) or "no rule counted a drop"
    keys = "; ".join(_hints(reasons)) or "the data section"
    came_in = ", ".join(f"{v} {k}" for k, v in records.items())
    return (f"build-data produced 0 {what} (from {came_in}); dropped by: {dropped}. "
            f"Settings to consider: {keys}.{(' ' + extra) if extra else ''}")


def check_not_empty(card: Mapping, sft_enabled: bool) -> list[str]:
    """Raise `EmptyOutput` when the build kept nothing at all (no pair of any kind and no SFT row); when only
    one kind is empty, return its message as a warning: the stage that needs that kind refuses to start."""
    splits, drops, records = card["splits"], card["drops"], card.get("records", {})
    total = {name: sum(counts.values()) for name, counts in splits.items()}
    empty = []
    if sft_enabled and not total.get("sft"):
        empty.append(empty_output_message("SFT rows", records, drops, ("posts/", "sft/"),
                                          "Real posts need an author TL;DR in their text."))
    if not total.get("pairs") and not total.get("pairs_cross_post"):
        empty.append(empty_output_message(
            "preference pairs", records, drops,
            ("posts/", "comments/", "same_post/", "time_adjacent/", "cross_post/", "cap/", "dedup/"),
            "Posts without comments (e.g. a submissions-only dump) give pairs only with "
            "data.pairs.cross_post.enabled=true."))
    if len(empty) == (2 if sft_enabled else 1):
        raise EmptyOutput("\n".join(empty))
    return empty
