"""The fact-swap probe: one same-kind fact word changed, everything else kept; gold prefers the original."""

import random

from data.sim.gold import gold_score
from data.sim.probes import fact_swap_pairs, swap_one_fact
from data.sim.text import LEXICON


def test_swap_changes_exactly_one_fact_word_of_the_same_kind():
    text = "My boyfriend lost my phone at the gym. Help."
    swapped, (old, new) = swap_one_fact(text, random.Random(1))
    assert old in {"boyfriend", "lost", "phone", "gym"} and new != old
    assert any(old in words and new in words for words in LEXICON.values())
    a, b = text.split(), swapped.split()
    assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
    assert swap_one_fact("No facts here at all.", random.Random(0)) is None


def test_probe_skips_fact_free_summaries_and_gold_prefers_originals():
    post = "My boyfriend (25M) lost my phone at the gym\n\nHe lost my phone at the gym last week."
    summaries = ["My boyfriend lost my phone at the gym.", "Lol what.", "He lost my phone."]
    probe = fact_swap_pairs([post] * 3, summaries, seed=0)
    assert len(probe) == 2 and probe.originals == [summaries[0], summaries[2]]
    assert all(gold_score(post, o) > gold_score(post, s) for o, s in zip(probe.originals, probe.swapped))
