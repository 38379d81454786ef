"""Grounding negatives (reward_model.grounding): which words are swapped, with what, and what the pairs hold."""

from __future__ import annotations

import random
import re

import pytest
from datasets import Dataset

from reward_model.grounding import (
    INSERT_STRATEGY,
    STRATEGY,
    GroundingNegativesConfig,
    _Vocabulary,
    add_grounding_negatives,
    clauses,
    corrupt,
    insert_clause,
    post_body,
)

POSTS = [
    "My sister (31F) lost my ring at the beach. It cost $900. What do I do?",
    "My boyfriend (27M) broke my phone at the gym. What do I do?",
    "My mom (60F) sold my guitar at the mall. What do I do?",
    "My roommate (22M) ate my cake at the party. What do I do?",
    "My boss (45M) lost my keys at the office. It cost $40. What do I do?",
]
SUMMARIES = [
    " my sister lost my ring at the beach, $900.",
    " my boyfriend broke my phone at the gym.",
    " my mom sold my guitar at the mall.",
    " my roommate ate my cake at the party.",
    " my boss lost my keys at the office, $40.",
]


def _pairs(n_copies: int = 2) -> Dataset:
    rows = []
    for c in range(n_copies):
        for i, (p, s) in enumerate(zip(POSTS, SUMMARIES)):
            rows.append({"pair_id": f"p{c}{i}", "prompt": p + "\n\nTL;DR:", "chosen": s, "rejected": " lol",
                         "strategy": "same_post", "chosen_score": 50, "rejected_score": 3, "margin": 1.5})
    return Dataset.from_list(rows)


def _vocab(cfg: GroundingNegativesConfig | None = None) -> _Vocabulary:
    return _Vocabulary(POSTS, SUMMARIES, cfg or GroundingNegativesConfig(max_doc_freq=0.5))


def test_function_words_are_the_ones_most_posts_share():
    vocab = _vocab()
    assert {"my", "at", "the", "what", "do"} <= vocab.function_words
    assert "sister" not in vocab.function_words and "lost" not in vocab.function_words  # 1-2 of 5 posts


def test_corrupt_swaps_one_grounded_word_for_a_word_absent_from_the_post():
    vocab = _vocab()
    post_words = set(re.findall(r"[a-z]+|\d+", POSTS[0].lower()))
    for seed in range(20):
        made = corrupt(SUMMARIES[0], POSTS[0], vocab, 1, random.Random(seed))
        assert made is not None
        text, n, _ = made
        assert n == 1
        before, after = SUMMARIES[0].split(), text.split()
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(before) == len(after) and len(changed) == 1, (text, changed)
        old, new = changed[0]
        assert re.sub(r"\W", "", new).lower().replace(",", "") not in post_words  # the new word is not grounded
        assert re.sub(r"\W", "", old).lower() in post_words  # the old one was
        assert old.strip("$,.") not in {"my", "at", "the"}  # function words never move


def test_replacement_shares_the_left_word_when_one_exists():
    """"my sister" becomes "my boyfriend/mom/roommate/boss/...", the words that follow "my" elsewhere."""
    vocab = _vocab()
    followers_of_my = set(vocab.followers["my"])
    matched_any = False
    for seed in range(30):
        text, _, matched = corrupt(SUMMARIES[0], POSTS[0], vocab, 1, random.Random(seed))
        old_new = [(a, b) for a, b in zip(SUMMARIES[0].split(), text.split()) if a != b][0]
        i = SUMMARIES[0].split().index(old_new[0])
        if i and SUMMARIES[0].split()[i - 1] == "my":
            assert old_new[1].strip(",.") in followers_of_my
            assert matched == 1
            matched_any = True
    assert matched_any


def test_numbers_are_replaced_by_numbers():
    vocab = _vocab()
    for seed in range(40):
        text, _, _ = corrupt(SUMMARIES[0], POSTS[0], vocab, 1, random.Random(seed))
        if "$900" not in text:
            assert re.search(r"\$\d", text), text  # "$900" -> "$<another number>", never "$guitar"
            return
    pytest.fail("no seed swapped the number")


def test_a_response_with_no_grounded_word_is_skipped():
    assert corrupt(" lol what do I do", POSTS[0], _vocab(), 1, random.Random(0)) is None


def test_add_negatives_adds_the_asked_fraction_and_clears_votes():
    pairs = _pairs()
    out, report = add_grounding_negatives(pairs, GroundingNegativesConfig(enabled=True, fraction=0.5, max_doc_freq=0.5))
    syn = [r for r in out if r["strategy"] == STRATEGY]
    assert report.n_added == len(syn) == 5 and len(out) == len(pairs) + 5
    for r in syn:
        assert r["chosen"] in SUMMARIES and r["rejected"] != r["chosen"]
        assert r["chosen_score"] == 0 and r["rejected_score"] == 0 and r["margin"] == 0.0  # no invented votes
        assert r["pair_id"].endswith("-g0")
    assert sorted(r["pair_id"] for r in out if r["strategy"] != STRATEGY) == sorted(pairs["pair_id"])


def test_disabled_returns_the_pairs_unchanged():
    pairs = _pairs()
    out, report = add_grounding_negatives(pairs, GroundingNegativesConfig())
    assert out is pairs and report.n_added == 0


def test_two_swaps_change_two_words():
    text, n, _ = corrupt(SUMMARIES[0], POSTS[0], _vocab(), 2, random.Random(0))
    assert n == 2 and sum(a != b for a, b in zip(SUMMARIES[0].split(), text.split())) == 2


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"reward.grounding_negatives.*\['rejected'\]"):
        add_grounding_negatives(Dataset.from_dict({"prompt": ["a"], "chosen": ["b"]}),
                                GroundingNegativesConfig(enabled=True))


def test_unknown_option_is_named():
    from pipelines.config import ExperimentConfig

    with pytest.raises(Exception, match="grounding_negatives.*n_swap"):
        ExperimentConfig.model_validate({"reward": {"grounding_negatives": {"n_swap": 2}}})


@pytest.mark.parametrize("source", ["comments", "tldrs"])
def test_training_adds_negatives_to_the_train_split_only(tmp_path, source):
    """train_reward_model trains on votes + negatives (made from comments, or from the TL;DR rows it is
    given), while its curves stay on the untouched validation pairs."""
    from datasets import DatasetDict

    from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
    from reward_model.train import RewardStageConfig, train_reward_model

    pairs = _pairs(4)
    tok = train_tokenizer(POSTS + SUMMARIES, vocab_size=300, min_frequency=1)
    policy = build_tiny_causal_lm(tok, ModelSpec(n_layer=1, n_embd=32, n_head=2, n_positions=128))
    policy.save_pretrained(tmp_path / "policy")
    tok.save_pretrained(tmp_path / "policy")
    cfg = RewardStageConfig(max_steps=2, max_length=96, eval_steps=0, save_steps=100, n_reference=4,
                            grounding_negatives={"enabled": True, "fraction": 1.0, "max_doc_freq": 0.5,
                                                 "source": source})
    res = train_reward_model(str(tmp_path / "policy"), tok, DatasetDict(train=pairs, validation=_pairs(1)),
                             tmp_path / "rm", cfg, [], tldrs=_tldr_rows() if source == "tldrs" else None)
    assert res.grounding.n_added == len(pairs)
    assert res.n_train_pairs == 2 * len(pairs)
    assert res.n_eval_pairs == len(POSTS)  # validation pairs are never augmented


_NEGATIVES_IN_A_FRESH_PROCESS = """
import json
from datasets import Dataset
from reward_model.grounding import GroundingNegativesConfig, add_grounding_negatives
people = ["sister", "brother", "mother", "father", "cousin", "friend", "neighbor", "teacher"]
things = ["ring", "phone", "guitar", "wallet", "laptop", "bike", "watch", "camera"]
rows = []
for i in range(40):
    who, what = people[i % 8], things[(3 * i) % 8]
    post = f"My {who} took my {what} on day {i}. What now?"
    rows.append({"prompt": post + "\\n\\nTL;DR:", "chosen": f" my {who} took my {what}", "rejected": " lol",
                 "strategy": "same_post"})
out, _ = add_grounding_negatives(Dataset.from_list(rows), GroundingNegativesConfig(enabled=True, fraction=1.0))
print(json.dumps(sorted(out["rejected"])))
"""


def test_negatives_do_not_depend_on_the_process_hash_seed():
    """Same seed, same negatives in every process: a rerun of a stage must train on the same pairs (a set of
    strings iterates in a per-process order, which once changed which replacement words were drawn)."""
    import json
    import os
    import subprocess
    import sys

    outputs = []
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", _NEGATIVES_IN_A_FRESH_PROCESS], env=env, capture_output=True,
                              text=True, check=True)
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert len(outputs[0]) == 80 and outputs[0] == outputs[1] == outputs[2]


# ---- clause insertions -------------------------------------------------------------------------------------
LONG_POSTS = [
    "TITLE: Sister lost my ring\n\nPOST: My sister lost my ring at the beach, and it cost $900. "
    "She says the lifeguard took it. What do I do?",
    "TITLE: Boyfriend broke my phone\n\nPOST: My boyfriend broke my phone at the gym, then he bought pizza. "
    "The screen is cracked. What do I do?",
    "TITLE: Mom sold my guitar\n\nPOST: My mom sold my guitar at the mall, because the neighbors complained. "
    "It was a birthday present. What do I do?",
]


def _content(text: str, vocab: _Vocabulary) -> set[str]:
    return {w for w in re.findall(r"[a-z]+|\d+", text.lower()) if vocab.is_content(w)}


def test_post_body_drops_the_prompt_scaffolding():
    prompt = "SUBREDDIT: r/advice\n\nTITLE: Lost ring\n\nPOST: My sister lost it.\n\nTL;DR:"
    assert post_body(prompt).split() == ["Lost", "ring", "My", "sister", "lost", "it."]


def test_clauses_are_short_runs_with_a_content_word():
    vocab = _vocab()
    found = [c for c, _ in clauses(post_body(LONG_POSTS[0]), vocab, max_words=8)]
    assert "My sister lost my ring at the beach" in found and "She says the lifeguard took it" in found
    assert "What do I do" not in found  # function words only
    assert all(2 <= len(c.split()) <= 8 for c in found)
    assert not [c for c, _ in clauses("My sister lost my ring at the beach near the big old pier", vocab, 8)]


@pytest.mark.parametrize("against", ["grounded", "original"])
def test_insertion_adds_a_foreign_clause_that_only_the_rejected_side_has(against):
    vocab = _vocab()
    cfg = GroundingNegativesConfig(enabled=True, insert_against=against)
    bodies = [post_body(p) for p in LONG_POSTS]
    foreign = [c for b in bodies[1:] for c in clauses(b, vocab, 8)]
    post_words = set(re.findall(r"[a-z]+|\d+", bodies[0].lower()))
    for seed in range(20):
        made = insert_clause(SUMMARIES[0], bodies[0], clauses(bodies[0], vocab, 8), foreign, cfg, random.Random(seed))
        assert made is not None
        good, bad = made
        added_bad = _content(bad, vocab) - _content(SUMMARIES[0], vocab)
        assert added_bad and added_bad.isdisjoint(post_words), bad  # the rejected side gains unsupported words
        if against == "original":
            assert good == SUMMARIES[0]
        else:
            added_good = _content(good, vocab) - _content(SUMMARIES[0], vocab)
            assert added_good and added_good <= post_words, good  # the chosen side gains the post's words
        # One spot: both sides are the response with ", <clause>" put at the same character offset.
        text = SUMMARIES[0]
        spots = [at for at in range(1, len(text) + 1)
                 if all(side.startswith(text[:at] + ", ") and side.endswith(text[at:]) for side in (good, bad)
                        if side != text)]
        assert spots, (good, bad)


def test_insertion_is_skipped_when_every_foreign_clause_overlaps_the_post():
    vocab = _vocab()
    cfg = GroundingNegativesConfig(enabled=True)
    body = post_body(LONG_POSTS[0])
    own = clauses(body, vocab, 8)
    assert insert_clause(SUMMARIES[0], body, own, own, cfg, random.Random(0)) is None


def test_add_negatives_makes_insertions_on_request():
    rows = [{"pair_id": f"p{i}", "prompt": p + "\n\nTL;DR:", "chosen": s, "rejected": " lol", "strategy": "same_post",
             "chosen_score": 50, "rejected_score": 3, "margin": 1.5}
            for i, (p, s) in enumerate(zip(LONG_POSTS * 2, SUMMARIES[:3] * 2))]
    pairs = Dataset.from_list(rows)
    cfg = GroundingNegativesConfig(enabled=True, fraction=0.0, insert_fraction=1.0, max_doc_freq=0.5)
    out, report = add_grounding_negatives(pairs, cfg)
    ins = [r for r in out if r["strategy"] == INSERT_STRATEGY]
    assert report.n_inserted == len(ins) == report.n_added == 6
    assert not [r for r in out if r["strategy"] == STRATEGY]  # fraction 0: no swaps
    for r in ins:
        assert r["chosen_score"] == 0 and r["margin"] == 0.0 and "-i" in r["pair_id"]
        assert len(r["rejected"]) > len(r["chosen"]) - 60 and r["rejected"] != r["chosen"]


# ---- negatives made from author TL;DRs ---------------------------------------------------------------------
def _tldr_rows() -> Dataset:
    return Dataset.from_list([{"post_id": f"t{i}", "subreddit": "advice", "prompt": p + "\n\nTL;DR:",
                               "completion": s, "post_text": p, "score": 10}
                              for i, (p, s) in enumerate(zip(POSTS, SUMMARIES))])


def test_tldr_source_makes_negatives_from_the_author_tldrs():
    pairs = _pairs()
    cfg = GroundingNegativesConfig(enabled=True, fraction=0.5, max_doc_freq=0.5, source="tldrs")
    out, report = add_grounding_negatives(pairs, cfg, _tldr_rows())
    syn = [r for r in out if r["strategy"] == STRATEGY]
    assert report.n_added == len(syn) == 5
    for r in syn:
        i = SUMMARIES.index(r["chosen"])  # the chosen side is an author TL;DR, the prompt its own post
        assert r["prompt"] == POSTS[i] + "\n\nTL;DR:" and r["pair_id"].startswith(f"tldr-t{i}-g")
        assert r["chosen_score"] == 0 and r["margin"] == 0.0 and r["rejected"] != r["chosen"]


def test_both_sources_draw_from_comments_and_tldrs():
    pairs = _pairs().map(lambda r: {"chosen": r["chosen"].replace(" at ", " near ")})  # comments != TL;DRs
    cfg = GroundingNegativesConfig(enabled=True, fraction=2.0, max_doc_freq=0.5, source="both")
    out, _ = add_grounding_negatives(pairs, cfg, _tldr_rows())
    chosen = {r["chosen"] for r in out if r["strategy"] == STRATEGY}
    assert chosen & set(SUMMARIES) and chosen & set(pairs["chosen"])


def test_tldr_source_without_tldrs_is_named():
    with pytest.raises(ValueError, match=r"grounding_negatives.source='tldrs'.*TL;DR"):
        add_grounding_negatives(_pairs(), GroundingNegativesConfig(enabled=True, source="tldrs"))
