"""The data card: drop counts, split sizes, distributions, gold agreement with/without the timestamp rule,
and the build entry point's outputs and idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from data.card import quantiles, render_markdown, summarize
from data.sim.pairs import sim_bayes_fn
from data.shards import ShardWriter
from pipelines.build import DatasetsConfig, build_datasets

T0 = 1_700_000_000.0


def words(text: str) -> int:
    return len(text.split())


def gold(post_text: str, summary: str) -> float:
    """The test world's hidden quality: the number a comment ends with."""
    return float(summary.split()[-1])


def _post(pid: str, created: float) -> dict:
    return {
        "id": pid, "subreddit": "advice" if pid.endswith(("0", "2", "4", "6", "8")) else "tifu",
        "title": f"Title {pid}", "selftext": f"Story {pid}.\n\nTL;DR: summary of {pid}", "author": "op",
        "created_utc": created, "score": 50, "upvote_ratio": 0.9, "num_comments": 4, "over_18": False,
        "edited": False, "stickied": False, "distinguished": "", "permalink": "", "retrieved_utc": T0 + 9e5,
        "source": "test",
    }


def _comment(cid: str, pid: str, sub: str, quality: int, score: int, created: float, stickied: bool = False) -> dict:
    return {
        "id": cid, "link_id": f"t3_{pid}", "parent_id": f"t3_{pid}", "post_id": pid, "subreddit": sub,
        "body": f"my answer has quality {quality}", "author": f"u-{cid}", "created_utc": created, "score": score,
        "depth": 0, "is_submitter": False, "edited": False, "stickied": stickied, "distinguished": "",
        "retrieved_utc": T0 + 9e5, "source": "test",
    }


def write_world(root: Path, n_posts: int = 12) -> Path:
    """Each post: an EARLY low-quality comment inflated by exposure, then later comments scored by merit.

    Without the timestamp rule, the early comment wins 3 of 6 pairs wrongly (gold agreement 0.5); with it,
    only the 3 later-wins pairs remain, all right (1.0). One stickied comment per post is dropped.
    """
    posts, comments = [], []
    for i in range(n_posts):
        pid, t = f"p{i}", T0 + i * 3600
        post = _post(pid, t)
        posts.append(post)
        for j, (quality, score) in enumerate([(1, 40), (2, 3), (5, 8), (9, 20)]):
            comments.append(_comment(f"{pid}c{j}", pid, post["subreddit"], quality, score, t + 60 * (j + 1)))
        comments.append(_comment(f"{pid}s", pid, post["subreddit"], 0, 99, t + 1, stickied=True))
    with ShardWriter(root, "posts") as w:
        for p in posts:
            w.add(p)
    with ShardWriter(root, "comments") as w:
        for c in comments:
            w.add(c)
    return root


CFG = DatasetsConfig.model_validate(
    {
        "pairs": {"same_post": {"max_pairs_per_post": None}},
        "split": {"validation_fraction": 0.25, "test_fraction": 0.25},
        "sft": {"min_completion_tokens": 1},
    }
)


def test_card_counts_gold_and_files(tmp_path):
    root = write_world(tmp_path / "records")
    def bayes(pairs: datasets.Dataset, name: str) -> float:
        return 0.875 if name.endswith("without_time_rule") else 0.75

    result = build_datasets(root, tmp_path / "out", CFG, count_tokens=words, gold_fn=gold, bayes_fn=bayes)
    card = result.card
    # counts
    assert card["records"] == {"posts": 12, "comments": 60, "prepared_posts": 12}
    assert card["drops"]["comments/stickied"] == 12
    assert card["drops"]["same_post/pair_preferred_written_earlier"] == 12 * 3
    assert card["splits"]["pairs"] == {s: len(result.pairs[s]) for s in result.pairs}
    assert card["splits"]["sft"] == {s: len(result.sft[s]) for s in result.sft}
    assert sum(card["splits"]["pairs"].values()) == 12 * 3 and sum(card["splits"]["sft"].values()) == 12
    by_sub = card["pairs_by_subreddit_strategy"]
    assert by_sub == {"advice": {"same_post": 18}, "tifu": {"same_post": 18}}
    assert card["score_quantiles"]["pairs/chosen_score"]["q1"] == 20.0
    assert card["score_quantiles"]["pairs/rejected_score"]["q0"] == 3.0
    # gold agreement with and without the timestamp rule
    gold_card = card["gold_agreement"]
    assert gold_card["same_post/with_time_rule"] == {"pairs": 36, "preferred_has_higher_gold": 1.0, "gold_ties": 0.0}
    assert gold_card["same_post/without_time_rule"]["pairs"] == 72
    assert gold_card["same_post/without_time_rule"]["preferred_has_higher_gold"] == 0.5
    assert gold_card["pairs/same_post"]["preferred_has_higher_gold"] == 1.0
    assert card["bayes_ceiling"]["same_post/without_time_rule"] == 0.875
    assert card["bayes_ceiling"]["pairs/same_post"] == 0.75
    # files
    out = tmp_path / "out"
    assert json.loads((out / "data_card.json").read_text())["drops"] == card["drops"]
    md = (out / "data_card.md").read_text()
    assert "| comments/stickied | 12 |" in md and "same_post/without_time_rule" in md
    assert "gold agreement same_post/with_time_rule: 1" in summarize(card)
    assert datasets.load_from_disk(str(out / "pairs"))["train"].num_rows == len(result.pairs["train"])
    assert datasets.load_from_disk(str(out / "sft"))["test"].num_rows == len(result.sft["test"])


def test_build_is_idempotent_and_rebuilds_on_config_change(tmp_path):
    root = write_world(tmp_path / "records", n_posts=6)
    first = build_datasets(root, tmp_path / "out", CFG, count_tokens=words)
    again = build_datasets(root, tmp_path / "out", CFG, count_tokens=words)
    assert not first.reused and again.reused and again.card == json.loads(json.dumps(first.card))
    assert again.pairs["train"]["pair_id"] == first.pairs["train"]["pair_id"]
    changed = CFG.model_copy(update={"pairs": CFG.pairs.model_copy(update={"max_pairs_per_post": 1})})
    rebuilt = build_datasets(root, tmp_path / "out", changed, count_tokens=words)
    assert not rebuilt.reused and sum(rebuilt.card["splits"]["pairs"].values()) == 6
    on_disk = datasets.load_from_disk(str(tmp_path / "out" / "pairs"))
    assert sum(len(on_disk[s]) for s in on_disk) == 6  # the old output was replaced, not mixed
    # a different tokenizer (token counts) is a different build
    assert not build_datasets(root, tmp_path / "out", changed, count_tokens=len).reused


def test_quantiles_and_markdown_without_gold():
    assert quantiles([], [0.5]) == {}
    assert quantiles([1, 2, 3, 4], [0.0, 0.5, 1.0]) == {"q0": 1.0, "q0.5": 2.5, "q1": 4.0}
    card = {
        "records": {"posts": 1}, "splits": {"pairs": {"train": 1}}, "split_rule": {}, "drops": {"a/b": 2},
        "pairs_by_subreddit_strategy": {}, "score_quantiles": {"x": {}}, "gold_agreement": {}, "bayes_ceiling": {},
    }
    md = render_markdown(card)
    assert "| a/b | 2 |" in md and "gold" not in md.lower()
    assert "a/b=2" in summarize(card)


def test_simulated_world_end_to_end(tmp_path):
    """Sim world -> records (real converters) -> datasets: our post_text/TL;DR equal the world's truth, and
    the card reports gold agreement and the simulator's Bayes ceiling for each pair set."""
    world_mod = pytest.importorskip("data.sim.world")
    from data.records import DeletedContent, comment_from_json, post_from_json
    from data.sim.gold import gold_score

    world = world_mod.SimWorld.generate(world_mod.WorldConfig(seed=1, posts_per_subreddit=12))
    root = tmp_path / "records"
    with ShardWriter(root, "posts") as wp, ShardWriter(root, "comments") as wc:
        for kind, writer, convert, items in (("posts", wp, post_from_json, world.posts),
                                             ("comments", wc, comment_from_json, world.comments.values())):
            for raw in items:
                try:
                    writer.add(convert(raw, retrieved_utc=T0, salt="s", source="sim"))
                except DeletedContent:
                    pass
    cfg = DatasetsConfig.model_validate(
        {"pairs": {"time_adjacent": {"enabled": True}}, "sft": {"min_completion_tokens": 1}}
    )
    result = build_datasets(root, tmp_path / "out", cfg, count_tokens=words, gold_fn=gold_score,
                            bayes_fn=sim_bayes_fn(world, cfg.pairs, n_samples=100))
    sft = datasets.concatenate_datasets(list(result.sft.values()))
    assert len(sft) > 20
    for row in sft:
        assert row["post_text"] == world.post_text(row["post_id"])
        assert row["completion"] == " " + world.author_tldr(row["post_id"])
    agreement, ceiling = result.card["gold_agreement"], result.card["bayes_ceiling"]
    # Gold agreement of each built pair set, recomputed from the pairs themselves: the chosen side's gold wins.
    built = [row for split in result.pairs.values() for row in split.to_list()]
    for strategy in ("same_post", "time_adjacent"):
        rows = [r for r in built if r["strategy"] == strategy]
        wins = [gold_score(r["post_text"], r["chosen"].strip()) > gold_score(r["post_text"], r["rejected"].strip())
                for r in rows]
        assert agreement[f"pairs/{strategy}"]["pairs"] == len(rows) > 20
        assert agreement[f"pairs/{strategy}"]["preferred_has_higher_gold"] == pytest.approx(sum(wins) / len(rows))
        # ... and the ceiling is the simulator's on exactly that set (its sample is order-free: a hash sort).
        own = datasets.Dataset.from_list(rows, features=result.pairs["train"].features)
        own_ceiling = sim_bayes_fn(world, cfg.pairs, n_samples=100)(own, f"pairs/{strategy}")
        assert ceiling[f"pairs/{strategy}"] == pytest.approx(own_ceiling)
    # The shipped same_post set is the with-time-rule variant; in this world (upvotes follow quality and
    # exposure) the rule raises both gold agreement and the Bayes ceiling, and upvotes beat a coin everywhere.
    assert agreement["pairs/same_post"] == agreement["same_post/with_time_rule"]
    assert ceiling["pairs/same_post"] == ceiling["same_post/with_time_rule"]
    with_rule, without_rule = "same_post/with_time_rule", "same_post/without_time_rule"
    assert agreement[with_rule]["pairs"] < agreement[without_rule]["pairs"]
    assert agreement[with_rule]["preferred_has_higher_gold"] > agreement[without_rule]["preferred_has_higher_gold"]
    assert ceiling[with_rule] > ceiling[without_rule]
    for name in ("pairs/same_post", "pairs/time_adjacent", with_rule, without_rule):
        assert agreement[name]["preferred_has_higher_gold"] > 0.6 and 0.6 < ceiling[name] < 0.95


def test_empty_splits_survive_a_reload(tmp_path):
    """datasets 5.2 cannot load a split saved with zero shards: empty splits are written as one shard."""
    root = write_world(tmp_path / "records", n_posts=3)
    cfg = CFG.model_copy(update={"split": CFG.split.model_copy(update={"validation_fraction": 0.0,
                                                                        "test_fraction": 0.0})})
    build_datasets(root, tmp_path / "out", cfg, count_tokens=words)
    again = build_datasets(root, tmp_path / "out", cfg, count_tokens=words)
    assert again.reused and len(again.pairs["validation"]) == 0 and len(again.sft["test"]) == 0
    assert len(again.pairs["train"]) == 9 and again.pairs["test"].column_names == again.pairs["train"].column_names
