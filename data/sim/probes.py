"""Diagnostic pairs for the simulated world: does a reward model check a summary's facts against its post?

    from data.sim.probes import fact_swap_pairs
    probe = fact_swap_pairs(prompts, summaries, seed=0)
    acc = (scorer.score(probe.prompts, probe.originals) > scorer.score(probe.prompts, probe.swapped)).mean()

Each pair is a reference TL;DR and the same TL;DR with ONE fact word (person, place, event or object of
`data.sim.text.LEXICON`) swapped for another of its kind: same length, same style, one wrong fact. Gold
prefers the original almost always; a reward model that only learned coarse quality (length, rudeness,
repetition, off-topic) scores ~50%. Why it matters: best-of-n and PPO can only raise gold through facts
if the reward model sees them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from data.sim.text import LEXICON

_CATEGORY_OF = {word: cat for cat, words in LEXICON.items() for word in words}
_WORD = re.compile(r"[A-Za-z]+")


@dataclass
class FactSwapProbe:
    """Parallel lists: the prompt, the original summary, and the summary with one fact swapped."""

    prompts: list[str]
    originals: list[str]
    swapped: list[str]
    swapped_words: list[tuple[str, str]]  # (original word, replacement)

    def __len__(self) -> int:
        return len(self.prompts)


def swap_one_fact(summary: str, rng: random.Random) -> tuple[str, tuple[str, str]] | None:
    """`summary` with one lexicon word replaced by another of its category; None if it states no such word."""
    spots = [m for m in _WORD.finditer(summary) if m.group(0).lower() in _CATEGORY_OF]
    if not spots:
        return None
    m = rng.choice(spots)
    word = m.group(0).lower()
    new = rng.choice([w for w in LEXICON[_CATEGORY_OF[word]] if w != word])
    if m.group(0)[0].isupper():
        new = new.capitalize()
    return summary[: m.start()] + new + summary[m.end():], (word, new)


def fact_swap_pairs(prompts: list[str], summaries: list[str], seed: int = 0) -> FactSwapProbe:
    """One probe pair per summary that states at least one lexicon fact (others are skipped)."""
    if len(prompts) != len(summaries):
        raise ValueError(f"prompts ({len(prompts)}) and summaries ({len(summaries)}) must have the same length")
    rng = random.Random(seed)
    probe = FactSwapProbe([], [], [], [])
    for prompt, summary in zip(prompts, summaries):
        swapped = swap_one_fact(summary, rng)
        if swapped is None:
            continue
        probe.prompts.append(prompt)
        probe.originals.append(summary)
        probe.swapped.append(swapped[0])
        probe.swapped_words.append(swapped[1])
    return probe
