"""Reward-model short-context warm-up (reward_model.train, step 3): title-only swap pairs, then the vote pairs."""

from __future__ import annotations

import re

import pytest
from datasets import Dataset, DatasetDict

from data.prompts import PROMPT_TEMPLATE
from reward_model.train import RewardStageConfig, short_context_pairs, train_reward_model

PEOPLE = ["sister", "brother", "mother", "father", "cousin", "friend", "neighbor", "teacher"]
THINGS = ["ring", "phone", "guitar", "wallet", "laptop", "bike", "watch", "camera"]
PLACES = ["beach", "gym", "mall", "office", "park", "airport", "library", "station"]


def _tldrs(n: int = 24) -> Dataset:
    """Author TL;DR rows: the title names who and what, only the body names where. Every body says "really",
    a third of the titles too: a function word of the posts, which a count over titles alone would miss."""
    rows = []
    for i in range(n):
        who, what, where = PEOPLE[i % 8], THINGS[(3 * i) % 8], PLACES[(5 * i) % 8]
        title = f"My {who} {'really ' if i % 3 == 0 else ''}took my {what}"
        body = f"It happened at the {where}, really. I am upset."
        rows.append({"prompt": PROMPT_TEMPLATE.format(subreddit="tifu", title=title, post=body),
                     "completion": f" my {who} really took my {what} at the {where}."})
    return Dataset.from_list(rows)


def _title_words(prompt: str) -> set[str]:
    title = re.search(r"TITLE: (.*)", prompt).group(1)
    return set(re.findall(r"[a-z]+", title.lower()))


def test_pairs_have_title_only_prompts_and_swap_a_title_word():
    rows = _tldrs()
    pairs, report = short_context_pairs(rows, RewardStageConfig(grounding_negatives={"max_doc_freq": 0.5}))
    assert report.n_added == len(pairs) == round(3.0 * len(rows))  # negatives_per_tldr defaults to 3
    for r in pairs:
        assert "POST:" not in r["prompt"] and r["prompt"].endswith("\n\nTL;DR:")
        assert r["chosen"] in rows["completion"]
        old = set(r["chosen"].lower().replace(".", "").split())
        new = set(r["rejected"].lower().replace(".", "").split())
        (gone,), (came,) = old - new, new - old  # exactly one word replaced
        title = _title_words(r["prompt"])
        assert gone in title and came not in title  # a grounded word out, an unsupported one in
        assert gone not in PLACES  # the body's words are not in the prompt, so never grounded here


def test_function_words_come_from_the_whole_posts():
    """"really" is in every post but a third of the titles: counted over titles alone it would be a content
    word, and grounded (so swapped) where the title has it."""
    pairs, _ = short_context_pairs(_tldrs(), RewardStageConfig(grounding_negatives={"max_doc_freq": 0.5}))
    titled = [r for r in pairs if "really" in _title_words(r["prompt"])]
    assert titled and all("really" in r["rejected"] for r in titled)


def test_tldr_rows_without_their_columns_are_named():
    with pytest.raises(ValueError, match=r"reward.short_context.*completion"):
        short_context_pairs(_tldrs().remove_columns("completion"), RewardStageConfig())


def _policy(tmp_path, rows: Dataset):
    from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer

    tok = train_tokenizer(list(rows["prompt"]) + list(rows["completion"]), vocab_size=300, min_frequency=1)
    policy = build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=128))
    policy.save_pretrained(tmp_path / "policy")
    tok.save_pretrained(tmp_path / "policy")
    return tok


def _vote_pairs(rows: Dataset) -> DatasetDict:
    pairs = Dataset.from_dict({"prompt": rows["prompt"], "chosen": rows["completion"],
                               "rejected": [" lol"] * len(rows), "strategy": ["same_post"] * len(rows)})
    return DatasetDict(train=pairs, validation=pairs.select(range(4)))


def test_warmup_trains_first_and_is_not_redone_on_a_rerun(tmp_path):
    rows = _tldrs()
    tok = _policy(tmp_path, rows)
    cfg = RewardStageConfig(max_steps=2, max_length=96, eval_steps=0, save_steps=100, n_reference=4,
                            short_context={"steps": 3, "negatives_per_tldr": 1.0},
                            grounding_negatives={"max_doc_freq": 0.5})
    res = train_reward_model(str(tmp_path / "policy"), tok, _vote_pairs(rows), tmp_path / "rm", cfg, [], tldrs=rows)
    assert (tmp_path / "rm" / "short_context" / "WARMUP_DONE").read_text().startswith("3 steps")
    assert res.metrics["rm_short/pairs"] == len(rows)
    assert res.global_step == 2  # the vote phase counts its own steps
    assert res.n_train_pairs == len(rows)  # the warm-up pairs are not added to the vote phase

    again = train_reward_model(str(tmp_path / "policy"), tok, _vote_pairs(rows), tmp_path / "rm",
                               cfg.model_copy(update={"resume": False}), [], tldrs=rows)
    assert "rm_short/pairs" not in again.metrics  # loaded from short_context/, not trained again


def test_warmup_without_tldrs_is_named(tmp_path):
    rows = _tldrs()
    tok = _policy(tmp_path, rows)
    cfg = RewardStageConfig(max_steps=1, max_length=96, short_context={"steps": 2})
    with pytest.raises(ValueError, match=r"reward.short_context.steps > 0 needs the training posts' author TL;DRs"):
        train_reward_model(str(tmp_path / "policy"), tok, _vote_pairs(rows), tmp_path / "rm", cfg, [])
