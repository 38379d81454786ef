"""The build-data stage's work: records -> preference pairs, SFT rows and the data card, written once.

    python -m pipelines build-data --config configs/demo.yaml      # pipelines/stages/build_data.py calls this
    from pipelines.build import DatasetsConfig, build_datasets
    result = build_datasets("runs/demo/scrape", "runs/demo/data", DatasetsConfig(), count_tokens=len)

The rules live below this module: pairs in `data.pairs`, SFT rows in `data.sft_rows`, prompts in
`data.prompts`, the card in `data.card`. Here they are run in order over one records directory, and the
outputs are written so that a rerun with the same inputs reuses them and an interrupted one never leaves a
mix of old and new datasets.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import datasets
from pydantic import BaseModel, ConfigDict, Field

from data.card import BayesFn, CardConfig, GoldFn, build_card, scrape_counts, write_card
from data.pairs import CROSS_POST_FEATURES, PairsConfig, build_pairs, eligible_comments
from data.prompts import PromptConfig, TokenCounter, as_token_counter, prepare_posts
from data.sft_rows import SFTResult, SFTRowsConfig, build_sft_rows
from data.shards import load_rows, shard_paths
from data.splits import PostSplitter, SplitConfig


class DatasetsConfig(BaseModel):
    """Everything `build_datasets` needs: prompts, splits, pairs, SFT rows, data card."""

    model_config = ConfigDict(extra="forbid")

    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Prompt format and budget.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Split rule (shared by pairs and SFT).")
    pairs: PairsConfig = Field(default_factory=PairsConfig, description="Preference pairs.")
    sft: SFTRowsConfig = Field(default_factory=SFTRowsConfig, description="SFT rows.")
    card: CardConfig = Field(default_factory=CardConfig, description="Data card.")



@dataclass
class BuildResult:
    """What `build_datasets` wrote (and returns): datasets, the data card, and whether it reused a build."""

    pairs: datasets.DatasetDict
    sft: datasets.DatasetDict
    cross_post: datasets.DatasetDict | None
    card: dict
    out_dir: Path
    reused: bool = False


OUTPUTS = ("pairs", "sft", "pairs_cross_post", "data_card.json", "data_card.md")
BUILD_INFO = "build_info.json"
_TOKEN_PROBE = ("SUBREDDIT: r/test\n\nTITLE: a probe\n\nPOST: Hello world.\n\nTL;DR:", " a short summary")


def _fingerprint(records_dir: Path, cfg: DatasetsConfig, count: TokenCounter, gold: bool, bayes: bool) -> str:
    """Config + shard files + tokenizer behaviour (token counts of probe strings): equal -> same output."""
    shards = [(str(p.relative_to(records_dir)), p.stat().st_size, p.stat().st_mtime_ns)
              for kind in ("posts", "comments") for p in shard_paths(records_dir, kind)]
    blob = json.dumps(
        {"cfg": cfg.model_dump(mode="json"), "shards": shards, "probe": [count(t) for t in _TOKEN_PROBE],
         "gold": gold, "bayes": bayes},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _replace_dir(tmp: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def build_datasets(
    records_dir: str | Path,
    out_dir: str | Path,
    cfg: DatasetsConfig | None = None,
    count_tokens: TokenCounter | Any = None,
    gold_fn: GoldFn | None = None,
    bayes_fn: BayesFn | None = None,
    log: Callable[[dict[str, float], int], None] | None = None,
) -> BuildResult:
    """Records directory -> `out_dir/pairs`, `out_dir/sft` (DatasetDicts, save_to_disk), optional
    `out_dir/pairs_cross_post`, `out_dir/data_card.json` and `.md`.

    Idempotent: a complete earlier build with the same fingerprint (config, shard files, tokenizer) is
    loaded, not rebuilt; otherwise every output is rebuilt and replaced (never mixed with an old one), and
    `build_info.json` is written last as the completion marker.
    """
    cfg = cfg or DatasetsConfig()
    if count_tokens is None:
        raise ValueError("build_datasets needs count_tokens: a callable str -> int or a HF tokenizer")
    count = as_token_counter(count_tokens)
    records_dir, out_dir = Path(records_dir), Path(out_dir)
    if not shard_paths(records_dir, "posts"):
        raise FileNotFoundError(f"no post shards under {records_dir / 'posts'} (expected part-*.parquet)")
    fingerprint = _fingerprint(records_dir, cfg, count, gold_fn is not None, bayes_fn is not None)
    info_path = out_dir / BUILD_INFO
    complete = info_path.exists() and all((out_dir / name).exists() for name in ("pairs", "sft", "data_card.json"))
    if complete and json.loads(info_path.read_text()).get("fingerprint") == fingerprint:
        cross_dir = out_dir / "pairs_cross_post"
        return BuildResult(
            pairs=datasets.load_from_disk(str(out_dir / "pairs")),
            sft=datasets.load_from_disk(str(out_dir / "sft")),
            cross_post=datasets.load_from_disk(str(cross_dir)) if cross_dir.exists() else None,
            card=json.loads((out_dir / "data_card.json").read_text()),
            out_dir=out_dir,
            reused=True,
        )

    # 1. records -> prepared posts (prompt, TL;DR split) and the post-id splitter over ALL posts
    post_rows = load_rows(records_dir, "posts")
    comment_rows = load_rows(records_dir, "comments")
    drops: Counter[str] = Counter()
    text_changes: Counter[str] = Counter()
    splitter = PostSplitter.from_posts(cfg.split, (r["created_utc"] for r in post_rows))
    posts = prepare_posts(post_rows, cfg.prompt, count, drops, text_changes)
    # 2. pairs and SFT rows
    pairs = build_pairs(posts, comment_rows, cfg.pairs, count, splitter)
    sft: SFTResult = build_sft_rows(posts.values() if cfg.sft.enabled else [], cfg.sft, count, splitter)
    drops.update(pairs.drops)
    drops.update(sft.drops)
    # 3. the timestamp-rule comparison for the card: same_post alone, with and without the rule
    rule_variants: dict[str, datasets.DatasetDict] = {}
    if gold_fn is not None and cfg.pairs.same_post.enabled:
        grouped = eligible_comments(comment_rows, posts, cfg.pairs.comments, count, Counter())
        for name, later in (("with_time_rule", True), ("without_time_rule", False)):
            only_same_post = cfg.pairs.model_copy(
                update={
                    "same_post": cfg.pairs.same_post.model_copy(update={"require_chosen_later": later}),
                    "time_adjacent": cfg.pairs.time_adjacent.model_copy(update={"enabled": False}),
                    "cross_post": cfg.pairs.cross_post.model_copy(update={"enabled": False}),
                }
            )
            rule_variants[name] = build_pairs(posts, [], only_same_post, count, splitter, grouped=grouped).pairs
    # 4. the card
    card = build_card(
        cfg=cfg.card,
        config=cfg.model_dump(mode="json"),
        records={"posts": len(post_rows), "comments": len(comment_rows), "prepared_posts": len(posts)},
        drops=drops,
        pairs=pairs.pairs,
        cross_post=pairs.cross_post,
        sft=sft.dataset,
        split_info={"rule": "by_time" if cfg.split.by_time else "hash", "time_cutoff": splitter.time_cutoff},
        gold_fn=gold_fn,
        bayes_fn=bayes_fn,
        time_rule_variants=rule_variants,
        scrape=scrape_counts(records_dir),
        text_changes=text_changes,
    )
    # 5. write: each output to a temporary name, then moved into place; build_info last
    out_dir.mkdir(parents=True, exist_ok=True)
    info_path.unlink(missing_ok=True)
    outputs = {"pairs": pairs.pairs, "sft": sft.dataset, "pairs_cross_post": pairs.cross_post}
    for name, dataset in outputs.items():
        if dataset is None:
            if (out_dir / name).exists():
                shutil.rmtree(out_dir / name)
            continue
        tmp = out_dir / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        # An empty split must be written as one (empty) shard: datasets 5.2 saves it with zero shards
        # and then cannot load it back.
        dataset.save_to_disk(str(tmp), num_shards={s: 1 for s in dataset if len(dataset[s]) == 0})
        _replace_dir(tmp, out_dir / name)
    write_card(card, out_dir)
    info_path.write_text(json.dumps({"fingerprint": fingerprint}, indent=2))
    if log is not None:
        log({f"data/{k}": float(v) for k, v in card["summary"].items() if v is not None}, 0)
    return BuildResult(pairs=pairs.pairs, sft=sft.dataset, cross_post=pairs.cross_post, card=card, out_dir=out_dir)


def load_pair_sets(data_dir: Path, names: list[str]) -> datasets.DatasetDict:
    """The build-data pair datasets `reward.pair_sets` names, split by split. Mixed with cross_post pairs, the
    one-prompt pairs get `rejected_*` columns equal to their own post's, so one schema holds both."""
    loaded = []
    for name in names:
        path = data_dir / name
        if not path.exists():
            hint = " (set data.pairs.cross_post.enabled: true and rerun build-data)" if name == "pairs_cross_post" else ""
            raise FileNotFoundError(f"reward.pair_sets names {name!r}, but build-data wrote no {path}{hint}")
        loaded.append(datasets.load_from_disk(str(path)))
    if len(loaded) == 1:
        return loaded[0]
    out = {}
    for split in loaded[0]:
        parts = []
        for dd in loaded:
            ds = dd[split]
            if "rejected_prompt" not in ds.column_names:
                ds = (ds.add_column("rejected_post_id", list(ds["post_id"]))
                        .add_column("rejected_prompt", list(ds["prompt"]))
                        .add_column("rejected_post_text", list(ds["post_text"])))
            parts.append(ds.cast(CROSS_POST_FEATURES))
        out[split] = datasets.concatenate_datasets(parts)
    return datasets.DatasetDict(out)
