"""Reward models on cross_post pairs (two posts, each side under its own prompt), and the recorded-thread converter.

cross_post pairs are the volume of real votes we have (author TL;DRs of real top posts, data/pairs.py); the
reward model must score each side under ITS post, as reward_model.evaluate does, in training too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest
import torch

from bench.cassettes_to_dump import convert
from data.pairs import CROSS_POST_FEATURES, PAIR_FEATURES
from data.sources.dumps import DumpConfig, ingest_dumps
from data.shards import load_records
from data.splits import rows_to_dataset
from pipelines.build import load_pair_sets
from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from reward_model.encoding import encode_prompt_response
from reward_model.grounding import GroundingNegativesConfig, add_grounding_negatives
from reward_model.train import RewardStageConfig, has_two_prompts, tokenize_pairs, train_reward_model

WORDS = ["car", "phone", "boss", "sister", "rent", "dog", "job", "ring", "couch", "keys"]


def _cross_rows(n: int, seed: int = 0) -> list[dict]:
    """cross_post rows: the chosen post is a long story, the rejected one a short note (what the votes preferred)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.sample(WORDS, 2)
        long_post = " ".join(rng.choice(WORDS) for _ in range(30))
        prompt = f"SUBREDDIT: r/test\n\nTITLE: my {a}\n\nPOST: {long_post}\n\nTL;DR:"
        rejected_prompt = f"SUBREDDIT: r/test\n\nTITLE: my {b}\n\nPOST: a {b}\n\nTL;DR:"
        rows.append({
            "pair_id": f"x{i}", "post_id": f"p{i}", "subreddit": "test", "strategy": "cross_post",
            "prompt": prompt, "chosen": f" my {a} and the {a} again", "rejected": f" lost my {b}",
            "chosen_id": f"p{i}", "rejected_id": f"q{i}", "chosen_score": 50, "rejected_score": 5,
            "score_ratio": 10.0, "margin": 0.0, "chosen_created_utc": 1.0, "rejected_created_utc": 2.0,
            "post_text": f"my {a}\n\n{long_post}", "rejected_post_id": f"q{i}", "rejected_prompt": rejected_prompt,
            "rejected_post_text": f"my {b}\n\na {b}",
        })
    return rows


@pytest.fixture(scope="module")
def tok():
    rows = _cross_rows(40)
    return train_tokenizer([r["prompt"] + r["chosen"] + r["rejected_prompt"] + r["rejected"] for r in rows],
                           vocab_size=300)


def test_each_side_is_tokenized_under_its_own_prompt(tok) -> None:
    pairs = datasets.Dataset.from_list(_cross_rows(4), features=CROSS_POST_FEATURES)
    ds, _ = tokenize_pairs(pairs, tok, max_length=None, use_margin=False)
    expected, _ = encode_prompt_response(tok, list(pairs["rejected_prompt"]), list(pairs["rejected"]), None)
    assert list(ds["rejected_ids"]) == expected
    chosen, _ = encode_prompt_response(tok, list(pairs["prompt"]), list(pairs["chosen"]), None)
    assert list(ds["chosen_ids"]) == chosen
    assert has_two_prompts(pairs) and not has_two_prompts(pairs.remove_columns(["rejected_prompt"]))


def test_training_on_cross_post_pairs_uses_two_rows_per_pair_and_learns(tok, tmp_path: Path) -> None:
    torch.manual_seed(0)
    rows = _cross_rows(96)
    pairs = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:80], features=CROSS_POST_FEATURES),
                                  "validation": datasets.Dataset.from_list(rows[80:], features=CROSS_POST_FEATURES)})
    lm = build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=128, seed=0))
    cfg = RewardStageConfig(max_steps=40, learning_rate=3e-3, per_device_train_batch_size=8, eval_steps=0,
                            n_reference=8, warmup_ratio=0.0, max_length=128)
    result = train_reward_model(lm.config, tok, pairs, tmp_path / "rm", cfg, report_to=[])
    assert result.batching == "pairs"  # no common prompt to compute once
    assert result.metrics["rm/eval/accuracy"] > 0.9  # the long post's side is learnable from the prompt
    with pytest.raises(ValueError, match="reward.batching=shared_prompt"):
        train_reward_model(lm.config, tok, pairs, tmp_path / "rm2", cfg.model_copy(update={"batching": "shared_prompt"}),
                           report_to=[])


def test_grounding_negatives_from_cross_post_rows_compare_one_post() -> None:
    rows = _cross_rows(20)
    for i, r in enumerate(rows):  # a name of its own in each post and its TL;DR: a grounded content word to swap
        name = f"friend{chr(97 + i)}"
        r.update(prompt=r["prompt"].replace("TITLE: my", f"TITLE: {name} and my"), chosen=f" {name} took my car")
    pairs = datasets.Dataset.from_list(rows, features=CROSS_POST_FEATURES)
    merged, report = add_grounding_negatives(pairs, GroundingNegativesConfig(enabled=True, fraction=1.0))
    synthetic = merged.filter(lambda s: s == "grounding_negative", input_columns="strategy")
    assert report.n_added == len(synthetic) > 0
    for row in synthetic:
        assert row["rejected_prompt"] == row["prompt"] and row["rejected_post_id"] == row["post_id"]
        assert row["rejected_post_text"] == row["post_text"]


def test_load_pair_sets_mixes_one_prompt_and_cross_post_pairs(tmp_path: Path) -> None:
    cross = _cross_rows(6)
    plain = [{k: v for k, v in r.items() if k in PAIR_FEATURES} | {"strategy": "same_post"} for r in _cross_rows(4, 1)]
    datasets.DatasetDict({s: datasets.Dataset.from_list(plain[i::2], features=PAIR_FEATURES)
                          for i, s in enumerate(("train", "test"))}).save_to_disk(str(tmp_path / "pairs"))
    datasets.DatasetDict({s: datasets.Dataset.from_list(cross[i::2], features=CROSS_POST_FEATURES)
                          for i, s in enumerate(("train", "test"))}).save_to_disk(str(tmp_path / "pairs_cross_post"))
    mixed = load_pair_sets(tmp_path, ["pairs", "pairs_cross_post"])
    assert len(mixed["train"]) == 2 + 3 and set(mixed["train"]["strategy"]) == {"same_post", "cross_post"}
    same = mixed["train"].filter(lambda s: s == "same_post", input_columns="strategy")
    assert list(same["rejected_prompt"]) == list(same["prompt"])
    with pytest.raises(FileNotFoundError, match="data.pairs.cross_post.enabled"):
        load_pair_sets(tmp_path / "nothing", ["pairs_cross_post"])


def test_recorded_responses_become_dump_lines(tmp_path: Path) -> None:
    """A listing with nested replies, a morechildren answer, a `more` stub and a failed call, in a cassette's shape."""
    def comment(cid: str, parent: str, replies=""):
        return {"kind": "t1", "data": {"id": cid, "name": f"t1_{cid}", "link_id": "t3_abc", "parent_id": parent,
                                       "subreddit": "test", "body": f"text {cid}", "author": "someone",
                                       "created_utc": 1.6e9, "score": 3, "replies": replies}}
    post = {"kind": "t3", "data": {"id": "abc", "subreddit": "test", "title": "a title", "selftext": "a post",
                                   "author": "op", "created_utc": 1.6e9, "score": 40, "num_comments": 3}}
    nested = {"kind": "Listing", "data": {"children": [comment("c2", "t1_c1")]}}
    page = [{"kind": "Listing", "data": {"children": [post]}},
            {"kind": "Listing", "data": {"children": [comment("c1", "t3_abc", nested),
                                                      {"kind": "more", "data": {"id": "m1", "children": ["c3"]}}]}}]
    more = {"json": {"data": {"things": [comment("c3", "t3_abc")]}}}
    cassette = {"interactions": [
        {"response": {"status": {"code": 200}, "body": {"string": json.dumps(page)}}},
        {"response": {"status": {"code": 200}, "body": {"string": json.dumps(more)}}},
        {"response": {"status": {"code": 404}, "body": {"string": json.dumps(page)}}},
        {"response": {"status": {"code": 200}, "body": {"string": "not json"}}},
    ]}
    path = tmp_path / "T.test.json"
    path.write_text(json.dumps(cassette))
    counts = convert([path], tmp_path / "dumps")
    assert counts["RS_cassettes.ndjson"] == 1 and counts["RC_cassettes.ndjson"] == 3
    stats = ingest_dumps(DumpConfig(paths=[str(tmp_path / "dumps" / "*.ndjson")], top_level_only=False,
                                    progress=False), tmp_path / "records")
    assert stats.posts_kept == 1 and stats.comments_kept == 3
    comments = load_records(tmp_path / "records", "comments")
    assert sorted(comments["id"]) == ["c1", "c2", "c3"] and set(comments["post_id"]) == {"abc"}


def test_data_card_says_what_a_cross_post_label_means() -> None:
    from data.card import CardConfig, build_card, render_markdown

    rows = _cross_rows(10)
    rows[0]["chosen_created_utc"] = 5.0  # one pair whose chosen post came later
    cross = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows, features=CROSS_POST_FEATURES)})
    empty = datasets.DatasetDict({"train": rows_to_dataset([], PAIR_FEATURES)})
    sft = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"score": 1, "completion": " x"}])})
    card = build_card(cfg=CardConfig(), config={}, records={}, drops={}, pairs=empty, cross_post=cross, sft=sft,
                      split_info={})
    label = card["cross_post_label"]
    assert label["pairs"] == 10 and label["chosen_post_longer"] == 1.0 and label["chosen_posted_later"] == 0.1
    assert label["chosen_tldr_longer"] == 1.0  # " my a and the a again" vs " lost my b"
    text = render_markdown(card)
    assert "## What a cross_post label means" in text and "not which summary is better" in text
