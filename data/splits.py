"""Train/validation/test assignment by post id, shared by preference pairs and SFT rows.

Why by post: two pairs (or a pair and an SFT row) from one post share its prompt; if they landed in
different splits, the held-out set would test memorized prompts. The split of a post is a pure function
of its id (a salted SHA-256), so pairs and SFT rows built in separate runs still agree, and adding posts
never moves an old one. With `by_time`, the latest posts (by `created_utc`) form the test split instead:
a harder test of generalization to new threads; the cutoff is computed once from all posts.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable

import datasets
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

SPLITS = ("train", "validation", "test")


class SplitConfig(BaseModel):
    """Split fractions and rule; one config for pairs and SFT rows so a post is in the same split in both."""

    model_config = ConfigDict(extra="forbid")

    validation_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of posts in validation.")
    test_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of posts in test.")
    salt: str = Field("upvote-rlhf-split", description="Salt of the post-id hash; change it to reshuffle.")
    by_time: bool = Field(
        False, description="Put the latest `test_fraction` of posts (by created_utc) in test; hash the rest."
    )

    @model_validator(mode="after")
    def _fractions_leave_train(self) -> "SplitConfig":
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"validation_fraction + test_fraction must be < 1 (got {self.validation_fraction} + "
                f"{self.test_fraction}): nothing would be left for train"
            )
        return self


def hash_unit(key: str, salt: str) -> float:
    """A deterministic uniform number in [0, 1) from a string."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()
    return int(digest[:15], 16) / 16**15


class PostSplitter:
    """Maps a post (id, created_utc) to its split. Build it with `from_posts` over ALL posts of a records
    directory, so the time cutoff does not depend on which posts survived a builder's filters."""

    def __init__(self, cfg: SplitConfig, time_cutoff: float | None = None) -> None:
        if cfg.by_time and time_cutoff is None and cfg.test_fraction > 0:
            raise ValueError("SplitConfig.by_time needs a time_cutoff: build the splitter with from_posts()")
        self.cfg = cfg
        self.time_cutoff = time_cutoff

    @classmethod
    def from_posts(cls, cfg: SplitConfig, created_utc: Iterable[float]) -> "PostSplitter":
        times = sorted(created_utc)
        cutoff = None
        if cfg.by_time and cfg.test_fraction > 0:
            # Posts at or after the cutoff (about the latest test_fraction of them) go to test.
            index = int(len(times) * (1.0 - cfg.test_fraction))
            cutoff = times[index] if index < len(times) else float("inf")
        return cls(cfg, cutoff)

    def split_of(self, post_id: str, created_utc: float) -> str:
        u = hash_unit(post_id, self.cfg.salt)
        if self.cfg.by_time:
            if self.time_cutoff is not None and created_utc >= self.time_cutoff:
                return "test"
            # The rest is split train/validation in the same proportion as the config asks overall.
            return "validation" if u < self.cfg.validation_fraction / (1.0 - self.cfg.test_fraction) else "train"
        if u < self.cfg.test_fraction:
            return "test"
        if u < self.cfg.test_fraction + self.cfg.validation_fraction:
            return "validation"
        return "train"


def rows_to_dataset(rows: list[dict], features: datasets.Features) -> datasets.Dataset:
    """Rows -> Dataset through one Arrow table: ~10x faster than `Dataset.from_list`, and it keeps the
    columns of zero rows (datasets 5.2's `from_list([])` loses them)."""
    table = pa.Table.from_pylist(rows, schema=features.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


def split_dataset_dict(
    rows: Iterable[dict], features: datasets.Features, split_of: Callable[[dict], str]
) -> datasets.DatasetDict:
    """Rows -> DatasetDict with all three splits (empty ones included, so consumers can index any split)."""
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in rows:
        by_split[split_of(row)].append(row)
    return datasets.DatasetDict({s: rows_to_dataset(by_split[s], features) for s in SPLITS})
