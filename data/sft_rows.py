"""SFT rows: the formatted post -> its author's TL;DR (Stiennon et al.'s supervised baseline data).

    from data.sft_rows import SFTRowsConfig, build_sft_rows
    result = build_sft_rows(prepared_posts, SFTRowsConfig(), count_tokens, splitter)

The prompt is the same `prepare_post` prompt the preference pairs use, and the split is the same post-id
rule (`data.splits.PostSplitter`), so a post held out from the reward model is held out from SFT too.
The completion is the author's TL;DR as `data.tldr` extracts it (plain text, no EDIT lines; non-summaries
such as "See title" are dropped as `sft/author_tldr_rejected_<reason>`), with one leading space and no
EOS: the trainer appends EOS.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import datasets
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data.prompts import PreparedPost, TokenCounter, as_token_counter, format_response
from data.splits import PostSplitter, split_dataset_dict

SFT_FEATURES = datasets.Features(
    {
        "post_id": datasets.Value("string"),
        "subreddit": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "completion": datasets.Value("string"),
        "post_text": datasets.Value("string"),
        "score": datasets.Value("int64"),
        "created_utc": datasets.Value("float64"),
    }
)


class SFTRowsConfig(BaseModel):
    """Which (post, author TL;DR) rows are kept for supervised fine-tuning."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Build the SFT dataset at all.")
    min_post_score: int | None = Field(
        None, description="Drop posts scoring below this (a crude quality filter); None keeps all."
    )
    min_prompt_tokens: int = Field(0, ge=0, description="Drop rows whose formatted prompt has fewer tokens.")
    min_completion_tokens: int = Field(
        2, ge=1, description="Drop TL;DRs shorter than this many tokens (Stiennon et al. kept 24-48)."
    )
    max_completion_tokens: int = Field(
        128, ge=1, description="Drop TL;DRs longer than this many tokens (they are not summaries)."
    )

    @model_validator(mode="after")
    def _range(self) -> "SFTRowsConfig":
        if self.min_completion_tokens > self.max_completion_tokens:
            raise ValueError(
                f"min_completion_tokens={self.min_completion_tokens} > max_completion_tokens="
                f"{self.max_completion_tokens}: no TL;DR could pass"
            )
        return self


@dataclass
class SFTResult:
    dataset: datasets.DatasetDict
    drops: Counter[str] = field(default_factory=Counter)  # "sft/<reason>" -> rows dropped


def sft_row_or_reason(
    post: PreparedPost, cfg: SFTRowsConfig, count_tokens: TokenCounter
) -> tuple[dict | None, str | None]:
    """One prepared post -> (SFT row, None), or (None, the first filter it fails)."""
    if post.tldr is None:  # none, or one that is not a summary ("See title", "No."): data.tldr rule 5
        return None, f"author_tldr_rejected_{post.tldr_rejected}" if post.tldr_rejected else "no_author_tldr"
    if cfg.min_post_score is not None and post.score < cfg.min_post_score:
        return None, "post_score_below_min"
    if count_tokens(post.prompt) < cfg.min_prompt_tokens:
        return None, "prompt_too_short"
    completion = format_response(post.tldr)
    n = count_tokens(completion)
    if n < cfg.min_completion_tokens:
        return None, "completion_too_short"
    if n > cfg.max_completion_tokens:
        return None, "completion_too_long"
    row = {
        "post_id": post.id,
        "subreddit": post.subreddit,
        "prompt": post.prompt,
        "completion": completion,
        "post_text": post.post_text,
        "score": post.score,
        "created_utc": post.created_utc,
    }
    return row, None


def build_sft_rows(
    posts: Iterable[PreparedPost], cfg: SFTRowsConfig, count_tokens: TokenCounter, splitter: PostSplitter
) -> SFTResult:
    """Prepared posts -> a DatasetDict of SFT rows (train/validation/test), drops counted by reason."""
    count = as_token_counter(count_tokens)
    rows: list[dict] = []
    drops: Counter[str] = Counter()
    for post in sorted(posts, key=lambda p: p.id):
        row, reason = sft_row_or_reason(post, cfg, count)
        if row is None:
            drops[f"sft/{reason}"] += 1
            continue
        rows.append(row)
    dataset = split_dataset_dict(rows, SFT_FEATURES, lambda r: splitter.split_of(r["post_id"], r["created_utc"]))
    return SFTResult(dataset=dataset, drops=drops)
