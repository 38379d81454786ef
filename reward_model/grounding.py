"""Grounding negatives: synthetic pairs that teach a reward model to check a summary against its post.

    from reward_model.grounding import GroundingNegativesConfig, add_grounding_negatives
    train_pairs, report = add_grounding_negatives(pairs["train"], GroundingNegativesConfig(enabled=True))

Why: upvotes rank comments by overall quality, and two comments under the same post rarely differ by one
wrong name or number, so a reward model trained on votes alone learns to *count* specifics but not to
*verify* them (our fact-swap probe sits at chance). FactCC (Kryscinski et al. 2020) trained factual-
consistency checkers on rule-made corruptions of reference summaries; this is the same idea as extra
Bradley-Terry pairs: (post, response) is preferred over (post, response with one grounded word swapped).

The rule is generic text statistics, no world knowledge:
- content word: letters or digits, at least `min_word_chars` long, in at most `max_doc_freq` of the posts
  (function words such as "the" or "what" are in most posts and never swapped);
- grounded spot: a content word of the response that also occurs in its post;
- replacement: a content word that follows the same left word somewhere in the training responses (so "my
  boyfriend" becomes "my sister", not "my because"), absent from this post, drawn by frequency; a spot
  whose left word has no such follower falls back to any content word of the same kind (digits or letters).
Only training pairs are augmented: validation and test pairs stay pure votes, so the held-out accuracy is
still a measure of learning upvotes.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from datasets import Dataset, concatenate_datasets
from pydantic import BaseModel, ConfigDict, Field

STRATEGY = "grounding_negative"
_TOKEN = re.compile(r"[A-Za-z]+|\d[\d,]*\d|\d")


class GroundingNegativesConfig(BaseModel):
    """Synthetic (response > response with a swapped grounded word) pairs added to the training pairs."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Add grounding negatives to the training pairs.")
    fraction: float = Field(
        0.5, gt=0.0, le=4.0, description="Synthetic pairs per training pair (drawn from its chosen responses)."
    )
    n_swaps: int = Field(1, ge=1, description="Grounded words swapped in each negative.")
    min_word_chars: int = Field(3, ge=1, description="Shortest word (letters) that can be swapped; numbers always can.")
    max_doc_freq: float = Field(
        0.2, gt=0.0, le=1.0, description="Words in more than this fraction of posts are function words, never swapped."
    )
    margin: float = Field(0.0, ge=0.0, description="`margin` column of the synthetic pairs (when reward.use_margin).")
    seed: int = Field(0, description="Seed of which responses and spots are chosen.")


@dataclass
class GroundingReport:
    """How the negatives were made (logged with the reward stage)."""

    n_added: int
    context_matched: float  # fraction of swapped words whose replacement shares the left word


def _words(text: str) -> list[re.Match]:
    return list(_TOKEN.finditer(text))


def _kind(word: str) -> str:
    return "digits" if word[0].isdigit() else "letters"


class _Vocabulary:
    """Content words of a corpus and which ones follow which left word in its responses."""

    def __init__(self, posts: list[str], responses: list[str], cfg: GroundingNegativesConfig) -> None:
        # Deduplicate in input order, never through a set: iterating a set of strings follows Python's
        # per-process hash seed, which would order the counters below, and with them which replacement
        # `rng.choices` draws, differently in every process (same seed, different negatives).
        unique_posts = list(dict.fromkeys(posts))
        df: Counter[str] = Counter()
        for post in unique_posts:
            df.update({m.group(0).lower() for m in _words(post)})
        n_posts = max(1, len(unique_posts))
        self.cfg = cfg
        self.function_words = {w for w, c in df.items() if c / n_posts > cfg.max_doc_freq}
        self.followers: dict[str, Counter[str]] = defaultdict(Counter)
        self.by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        for text in dict.fromkeys(responses):
            prev = ""
            for m in _words(text):
                w = m.group(0).lower()
                if self.is_content(w):
                    self.followers[prev][w] += 1
                    self.by_kind[_kind(w)][w] += 1
                prev = w

    def is_content(self, word: str) -> bool:
        if word in self.function_words:
            return False
        return word[0].isdigit() or len(word) >= self.cfg.min_word_chars


def _draw(counts: Counter[str], exclude: set[str], rng: random.Random) -> str | None:
    options = [(w, c) for w, c in counts.items() if w not in exclude]
    if not options:
        return None
    words, weights = zip(*options)
    return rng.choices(words, weights=weights)[0]


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new.capitalize() if old[0].isupper() else new


def corrupt(
    response: str, post: str, vocab: _Vocabulary, n_swaps: int, rng: random.Random
) -> tuple[str, int, int] | None:
    """`response` with up to `n_swaps` grounded words replaced by words absent from `post`, the number of
    words swapped, and how many replacements shared the left word; None when no grounded word has one."""
    post_words = {m.group(0).lower() for m in _words(post)}
    matches = _words(response)
    spots = [i for i, m in enumerate(matches) if vocab.is_content(w := m.group(0).lower()) and w in post_words]
    rng.shuffle(spots)
    swaps: dict[int, str] = {}
    matched = 0
    for i in spots:
        if len(swaps) == n_swaps:
            break
        old = matches[i].group(0)
        kind, exclude = _kind(old.lower()), post_words | {old.lower()}
        left = matches[i - 1].group(0).lower() if i else ""
        same_left = Counter({w: c for w, c in vocab.followers.get(left, {}).items() if _kind(w) == kind})
        new = _draw(same_left, exclude, rng)
        matched += new is not None
        new = new or _draw(vocab.by_kind[kind], exclude, rng)
        if new is not None:
            swaps[i] = _match_case(new, old)
    if not swaps:
        return None
    out, last = [], 0
    for i in sorted(swaps):
        out.append(response[last : matches[i].start()] + swaps[i])
        last = matches[i].end()
    return "".join(out) + response[last:], len(swaps), matched


def add_grounding_negatives(pairs: Dataset, cfg: GroundingNegativesConfig) -> tuple[Dataset, GroundingReport]:
    """`pairs` plus synthetic grounding pairs (same columns; `strategy` = "grounding_negative").

    Needs `prompt`, `chosen` and `rejected`; the post's text is the prompt (the trailing "TL;DR:" holds no
    content word). Other columns of the synthetic rows copy their source pair, except the ids and scores,
    which are cleared so no vote is invented.
    """
    if not cfg.enabled or len(pairs) == 0:
        return pairs, GroundingReport(0, 0.0)
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in pairs.column_names]
    if missing:
        raise ValueError(f"reward.grounding_negatives needs pair columns {missing}; have {pairs.column_names}")
    prompts, chosen = list(pairs["prompt"]), list(pairs["chosen"])
    vocab = _Vocabulary(prompts, chosen + list(pairs["rejected"]), cfg)
    rng = random.Random(cfg.seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    want = int(round(cfg.fraction * len(pairs)))
    rows: list[dict] = []
    n_matched = n_swapped = 0
    for rep in range(int(cfg.fraction) + 1):  # fraction > 1 revisits responses (other spots, other words)
        for i in order:
            if len(rows) >= want:
                break
            made = corrupt(chosen[i], prompts[i], vocab, cfg.n_swaps, rng)
            if made is None:
                continue
            text, swapped, matched = made
            row = dict(pairs[i])
            row.update(chosen=chosen[i], rejected=text, strategy=STRATEGY)
            if "pair_id" in row:
                row["pair_id"] = f"{row['pair_id']}-g{rep}"
            if "margin" in row:
                row["margin"] = cfg.margin
            for col in ("rejected_id", "rejected_score", "chosen_score", "score_ratio"):
                if col in row:
                    row[col] = type(row[col])() if row[col] is not None else None
            rows.append(row)
            n_matched += matched
            n_swapped += swapped
    if not rows:
        return pairs, GroundingReport(0, 0.0)
    extra = Dataset.from_list(rows, features=pairs.features)
    merged = concatenate_datasets([pairs, extra]).shuffle(seed=cfg.seed)
    return merged, GroundingReport(len(rows), n_matched / max(1, n_swapped))
