"""Gold quality of a summary: the hidden truth behind the simulated upvotes, computable on ANY text.

    from data.sim.gold import gold_score, gold_components
    gold_score(post_text, " my bf (27M) lost my ring at the beach. What do I do?")  # -> float in [0, 1]

`post_text` is the post's title + body, or the formatted prompt
("SUBREDDIT: r/x\\n\\nTITLE: ...\\n\\nPOST: ...\\n\\nTL;DR:"); anything from the last line that starts with
"TL;DR" on is cut off first, so the author's own TL;DR never counts as part of the post.

Rule (fixed, documented here once):
1. Facts of a text = lexicon words of `data.sim.text.LEXICON` (people, places, events, objects; aliases like
   "bf" map to "boyfriend"; a plural "s" is dropped when the singular is a lexicon word), plus age tags
   ("25F", "(25 f)") and numbers ("$1,200" -> "1200"; the digits of an age tag are not a second number).
2. coverage   = |facts(summary) & facts(post)| / min(|facts(post)|, 6)   capped at 1 (6 facts fit a TL;DR).
   precision  = |facts(summary) & facts(post)| / |facts(summary)|, 0 when the summary states no fact
               (1 - precision is the share of hallucinated or wrong facts).
   length     = 1 for 10..35 words, n/10 below, 35/n above.
   repetition = 1 - distinct word bigrams / word bigrams.
   rude       = 1 if any word of `RUDE_WORDS` occurs.
3. gold = clip(0.45 coverage + 0.20 precision + 0.20 length + 0.15 (1 - repetition) - 0.30 rude, 0, 1).
A leading "TL;DR:"/"tl;dr" marker on the summary is ignored. An empty summary scores 0.
"""

from __future__ import annotations

import re
from functools import lru_cache

from data.sim.text import ALIASES, FACT_WORDS, RUDE_WORDS

COVERAGE_CAP = 6
LENGTH_RANGE = (10, 35)
WEIGHTS = {"coverage": 0.45, "precision": 0.20, "length": 0.20, "non_repetition": 0.15, "rude": -0.30}

_AGE = re.compile(r"\b(\d{2})\s?([mfMF])\b")
_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+")
_DIGIT = re.compile(r"\d")
_TLDR_LINE = re.compile(r"(?im)^[ \t]*(?:tl;?\s?dr|tldr)\b")
_TLDR_PREFIX = re.compile(r"^\s*(?:tl;?\s?dr|tldr)\s*[:;,.\-]*\s*", re.IGNORECASE)


def strip_tldr(post_text: str) -> str:
    """The post without its TL;DR paragraph (or the prompt's trailing "TL;DR:"): from the last line that
    starts with TL;DR on."""
    matches = list(_TLDR_LINE.finditer(post_text))
    return post_text[: matches[-1].start()] if matches else post_text


# word -> fact it states: lexicon words, their plurals (unless the plural is itself a lexicon word), aliases.
_FACT_OF: dict[str, str] = {**{w + "s": w for w in FACT_WORDS}, **{w: w for w in FACT_WORDS}, **ALIASES}


def extract_facts(text: str) -> frozenset[str]:
    """Facts stated in `text` (rule 1 of the module docstring)."""
    facts: set[str] = set()
    rest = text
    if _DIGIT.search(text):
        for m in _AGE.finditer(text):
            facts.add(f"{m.group(1)}{m.group(2).lower()}")
        rest = _AGE.sub(" ", rest)
        for m in _NUMBER.finditer(rest):
            facts.add(m.group(0).lstrip("$").replace(",", ""))
    facts.update(_FACT_OF[w] for w in _WORD.findall(rest.lower()) if w in _FACT_OF)
    return frozenset(facts)


@lru_cache(maxsize=8192)
def _post_facts(post_text: str) -> frozenset[str]:
    return extract_facts(strip_tldr(post_text))


def _weighted(coverage: float, precision: float, length: float, repetition: float, rude: float) -> float:
    """Rule 3 of the module docstring before clipping: the one place the terms are weighted."""
    return (
        WEIGHTS["coverage"] * coverage
        + WEIGHTS["precision"] * precision
        + WEIGHTS["length"] * length
        + WEIGHTS["non_repetition"] * (1.0 - repetition)
        + WEIGHTS["rude"] * rude
    )


def gold_components(post_text: str, summary: str) -> dict[str, float]:
    """Every term of the gold score (for reports), plus `gold` itself."""
    summary = _TLDR_PREFIX.sub("", summary.strip())
    post_facts = _post_facts(post_text)
    sum_facts = extract_facts(summary)
    words = _WORD.findall(summary.lower())
    n = len(words)
    hits = len(sum_facts & post_facts)
    coverage = min(1.0, hits / max(1, min(len(post_facts), COVERAGE_CAP)))
    precision = hits / len(sum_facts) if sum_facts else 0.0
    lo, hi = LENGTH_RANGE
    length = 0.0 if n == 0 else (n / lo if n < lo else (hi / n if n > hi else 1.0))
    bigrams = list(zip(words, words[1:]))
    repetition = 1.0 - len(set(bigrams)) / len(bigrams) if bigrams else 0.0
    rude = 0.0 if RUDE_WORDS.isdisjoint(words) else 1.0
    gold = _weighted(coverage, precision, length, repetition, rude)
    gold = 0.0 if n == 0 else min(1.0, max(0.0, gold))
    return {
        "gold": gold, "coverage": coverage, "precision": precision, "length": length,
        "repetition": repetition, "rude": rude, "n_words": float(n), "n_post_facts": float(len(post_facts)),
        "n_summary_facts": float(len(sum_facts)), "n_hallucinated": float(len(sum_facts - post_facts)),
    }


def gold_score(post_text: str, summary: str) -> float:
    """Hidden quality in [0, 1] of `summary` as a TL;DR of `post_text` (rule in the module docstring)."""
    return gold_components(post_text, summary)["gold"]


def fact_blind_gold(post_text: str, summary: str) -> float:
    """Gold as a reader would estimate it who counts a summary's facts but never checks them against the post:
    coverage from the number of facts stated (capped like gold's), precision 1 whenever a fact is stated.
    A reference point for reward models: what can be predicted without verifying facts."""
    c = gold_components(post_text, summary)
    if c["n_words"] == 0:
        return 0.0
    coverage = min(1.0, c["n_summary_facts"] / max(1.0, min(c["n_post_facts"], COVERAGE_CAP)))
    precision = 1.0 if c["n_summary_facts"] else 0.0
    return min(1.0, max(0.0, _weighted(coverage, precision, c["length"], c["repetition"], c["rude"])))


def style_only_gold(post_text: str, summary: str) -> float:
    """Only gold's style terms (length, repetition, rudeness): what a reader of form alone would predict."""
    c = gold_components(post_text, summary)
    return _weighted(0.0, 0.0, c["length"], c["repetition"], c["rude"])


# Text scorers of known ability that the reward evaluation places a reward model among (simulator only);
# the names become metric keys (rm/reference/<name>/...).
REFERENCE_SCORERS = {"gold": gold_score, "gold_facts_unchecked": fact_blind_gold, "gold_style_only": style_only_gold}
