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
Clause insertions (`insert_fraction`): a swap keeps the number of facts, but a policy optimized against a
votes-trained model learns to *add* facts, most of them wrong (eval-policy's gold parts). So a second kind of
pair inserts one clause at the same spot of a response: a clause of its own post beats a clause of another
post that shares no content word with this one (`insert_against: grounded`), which differs only in whether
the added words are in the post; or the untouched response beats the one with the foreign clause
(`insert_against: original`), which also says that adding unsupported words is worse than adding nothing.
Clauses are runs of 2..`max_clause_words` words between punctuation, with at least one content word.
Only training pairs are augmented: validation and test pairs stay pure votes, so the held-out accuracy is
still a measure of learning upvotes.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

from datasets import Dataset, Features, concatenate_datasets
from pydantic import BaseModel, ConfigDict, Field

STRATEGY = "grounding_negative"
INSERT_STRATEGY = "grounding_insert"
_TOKEN = re.compile(r"[A-Za-z]+|\d[\d,]*\d|\d")
_CLAUSE = re.compile(r"[^,.;:!?\n()]+")
_BOUNDARY = re.compile(r"[,.;!?]")
# Lines of the Stiennon prompt that are not the post's own words ("SUBREDDIT: r/x", the trailing "TL;DR:"),
# and the labels in front of the ones that are ("TITLE: ", "POST: ").
_NOT_POST_LINE = re.compile(r"(?im)^(?:SUBREDDIT:.*|TL;DR:.*)$")
_LABEL = re.compile(r"(?m)^[A-Z]+: ?")


class GroundingNegativesConfig(BaseModel):
    """Synthetic (response > response with a swapped grounded word) pairs added to the training pairs."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Add grounding negatives to the training pairs.")
    fraction: float = Field(
        0.5, ge=0.0, le=4.0, description="Word-swap pairs per training pair (drawn from its chosen responses)."
    )
    n_swaps: int = Field(1, ge=1, description="Grounded words swapped in each negative.")
    min_word_chars: int = Field(3, ge=1, description="Shortest word (letters) that can be swapped; numbers always can.")
    max_doc_freq: float = Field(
        0.2, gt=0.0, le=1.0, description="Words in more than this fraction of posts are function words, never swapped."
    )
    insert_fraction: float = Field(
        0.0, ge=0.0, le=4.0, description="Clause-insertion pairs per training pair (a response with a clause of "
        "another post loses); 0 = none."
    )
    insert_against: Literal["grounded", "original"] = Field(
        "grounded", description="What beats the response with a foreign clause: the same response with a clause "
        "of its own post at the same spot (grounded), or the response as it was (original)."
    )
    max_clause_words: int = Field(8, ge=2, description="Longest clause (words) that insertion pairs add.")
    source: Literal["comments", "tldrs", "both"] = Field(
        "comments", description="What the negatives are made from: the chosen comments of the vote pairs, the "
        "training posts' author TL;DRs (the texts the SFT policy imitates), or both."
    )
    margin: float = Field(0.0, ge=0.0, description="`margin` column of the synthetic pairs (when reward.use_margin).")
    seed: int = Field(0, description="Seed of which responses and spots are chosen.")


@dataclass
class GroundingReport:
    """How the negatives were made (logged with the reward stage)."""

    n_added: int
    context_matched: float  # fraction of swapped words whose replacement shares the left word
    n_inserted: int = 0  # clause-insertion pairs among the n_added


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


def post_body(prompt: str) -> str:
    """The post's own words in a Stiennon-format prompt (no subreddit line, labels or trailing "TL;DR:");
    other text is returned as it is."""
    return _LABEL.sub("", _NOT_POST_LINE.sub("", prompt))


Clause = tuple[str, frozenset[str]]  # text, its content words (lower case)


def clauses(text: str, vocab: _Vocabulary, max_words: int) -> list[Clause]:
    """Runs of 2..`max_words` words between punctuation that hold at least one content word."""
    out: list[Clause] = []
    for m in _CLAUSE.finditer(text):
        words = [w.group(0).lower() for w in _words(m.group(0))]
        content = frozenset(w for w in words if vocab.is_content(w))
        if 2 <= len(words) <= max_words and content:
            out.append((" ".join(m.group(0).split()), content))
    return out


def _as_inserted(clause: str) -> str:
    """A clause as it reads after ", ": lower-case first letter unless it is "I" or an acronym."""
    first = clause.split(" ", 1)[0]
    keep = first == "I" or first.startswith("I'") or (first.isupper() and len(first) > 1)
    return clause if keep else clause[0].lower() + clause[1:]


def insert_clause(
    response: str, post: str, own: list[Clause], foreign: list[Clause], cfg: GroundingNegativesConfig,
    rng: random.Random, tries: int = 20,
) -> tuple[str, str] | None:
    """(chosen, rejected): `response` with a clause of `foreign` that shares no content word with `post`
    inserted where one of its clauses ends, against the same response with one of `own` (the clauses of
    `post`) there (`insert_against="grounded"`) or as it was ("original"); None when no clause fits."""
    body = response.rstrip()
    if not _words(body):
        return None
    post_words = {m.group(0).lower() for m in _words(post)}
    response_words = {m.group(0).lower() for m in _words(response)}
    bad = None
    for _ in range(tries):
        text, content = foreign[rng.randrange(len(foreign))]
        if content.isdisjoint(post_words):
            bad = text
            break
    if bad is None:
        return None
    good = None
    if cfg.insert_against == "grounded":
        fresh = [c for c in own if not c[1] <= response_words]
        if not fresh:
            return None
        good = fresh[rng.randrange(len(fresh))][0]
    # A spot: just before a punctuation mark that ends a clause of the response, or at its end.
    spots = [m.start() for m in _BOUNDARY.finditer(body) if m.start() > 0] + [len(body)]
    at = spots[rng.randrange(len(spots))]
    tail = response[len(body):]

    def put(clause: str) -> str:
        return body[:at] + ", " + _as_inserted(clause) + body[at:] + tail

    return (put(good) if good is not None else response), put(bad)


def _synthetic_row(source: dict, chosen: str, rejected: str, strategy: str, suffix: str, margin: float) -> dict:
    """A training pair made from `source`'s row: its other columns, no votes, a derived pair id."""
    row = dict(source)
    row.update(chosen=chosen, rejected=rejected, strategy=strategy)
    if "pair_id" in row:
        row["pair_id"] = f"{row['pair_id']}-{suffix}"
    if "margin" in row:
        row["margin"] = margin
    for col in ("rejected_id", "rejected_score", "chosen_score", "score_ratio"):
        if col in row:
            row[col] = type(row[col])() if row[col] is not None else None
    return _one_post(row)


def _one_post(row: dict) -> dict:
    """A synthetic pair compares two versions of ONE response under one post: a cross_post source row's
    rejected-side post columns are set to the chosen side's."""
    for rejected_col, col in (("rejected_prompt", "prompt"), ("rejected_post_text", "post_text"),
                              ("rejected_post_id", "post_id")):
        if rejected_col in row and col in row:
            row[rejected_col] = row[col]
    return row


def _blank_row(features: Features) -> dict:
    """A row of `features` with every column empty (""/0/False/None): the template of a synthetic pair that
    has no vote pair behind it."""
    blank: dict = {}
    for col, feat in features.items():
        dtype = getattr(feat, "dtype", None)
        blank[col] = ("" if dtype in ("string", "large_string") else False if dtype == "bool"
                      else 0 if dtype and dtype.startswith(("int", "uint")) else 0.0 if dtype and dtype.startswith("float")
                      else None)
    return blank


@dataclass
class _Bases:
    """The (prompt, response) texts negatives are made from, and the row each synthetic pair copies."""

    prompts: list[str]
    responses: list[str]
    rows: list[dict]
    n_comments: int = 0  # the first n_comments bases are vote-pair comments, the rest author TL;DRs


def _bases(pairs: Dataset, cfg: GroundingNegativesConfig, tldrs: Dataset | None) -> _Bases:
    """Chosen comments of the vote pairs, author TL;DRs of the training posts, or both (`cfg.source`)."""
    out = _Bases([], [], [])
    if cfg.source in ("comments", "both"):
        out.prompts += list(pairs["prompt"])
        out.responses += list(pairs["chosen"])
        out.rows += [dict(r) for r in pairs]
        out.n_comments = len(pairs)
    if cfg.source in ("tldrs", "both"):
        if tldrs is None or not len(tldrs):
            raise ValueError(f"reward.grounding_negatives.source={cfg.source!r} needs the training posts' author "
                             "TL;DRs (build-data/sft train split); none were given")
        missing = [c for c in ("prompt", "completion") if c not in tldrs.column_names]
        if missing:
            raise ValueError(f"reward.grounding_negatives.source={cfg.source!r}: the TL;DR rows lack columns "
                             f"{missing}; have {tldrs.column_names}")
        blank = _blank_row(pairs.features)
        for r in tldrs:
            row = dict(blank)
            row.update({k: r[k] for k in ("post_id", "subreddit", "prompt", "post_text") if k in row and k in r})
            if "pair_id" in row:
                row["pair_id"] = f"tldr-{r.get('post_id', len(out.rows))}"
            out.prompts.append(r["prompt"])
            out.responses.append(r["completion"])
            out.rows.append(_one_post(row))
    return out


def add_grounding_negatives(
    pairs: Dataset, cfg: GroundingNegativesConfig, tldrs: Dataset | None = None,
    vocabulary_prompts: list[str] | None = None,
) -> tuple[Dataset, GroundingReport]:
    """`pairs` plus synthetic grounding pairs (same columns; `strategy` = "grounding_negative" for word swaps,
    "grounding_insert" for clause insertions).

    Needs `prompt`, `chosen` and `rejected`; the post's text is the prompt (the trailing "TL;DR:" holds no
    content word). The negatives are made from the chosen comments, or from `tldrs` (`prompt`, `completion`
    rows: the training posts' author TL;DRs, what the SFT policy imitates) when `cfg.source` asks for them.
    Other columns of the synthetic rows copy their source pair (or are left empty for a TL;DR), except the
    ids and scores, which are cleared so no vote is invented. `fraction` and `insert_fraction` count
    synthetic pairs per vote pair whatever the source. `vocabulary_prompts` (default: the pairs' prompts and
    TL;DR prompts) are the posts whose document frequencies tell function words from content words: whole
    posts when the pairs' prompts are shortened ones, whose few words would make "will" a content word.
    """
    if not cfg.enabled or len(pairs) == 0:
        return pairs, GroundingReport(0, 0.0)
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in pairs.column_names]
    if missing:
        raise ValueError(f"reward.grounding_negatives needs pair columns {missing}; have {pairs.column_names}")
    bases = _bases(pairs, cfg, tldrs)
    tldr = slice(bases.n_comments, None)  # the vote pairs' texts are always in the vocabulary; TL;DRs when used
    posts = vocabulary_prompts if vocabulary_prompts is not None else list(pairs["prompt"]) + bases.prompts[tldr]
    vocab = _Vocabulary(posts,
                        list(pairs["chosen"]) + list(pairs["rejected"]) + bases.responses[tldr], cfg)
    rng = random.Random(cfg.seed)
    order = list(range(len(bases.responses)))
    rng.shuffle(order)
    want = int(round(cfg.fraction * len(pairs)))
    rows: list[dict] = []
    n_matched = n_swapped = 0
    for rep in range(want // max(1, len(order)) + 1):  # more than one per base revisits it (other spots, words)
        for i in order:
            if len(rows) >= want:
                break
            made = corrupt(bases.responses[i], bases.prompts[i], vocab, cfg.n_swaps, rng)
            if made is None:
                continue
            text, swapped, matched = made
            rows.append(_synthetic_row(bases.rows[i], bases.responses[i], text, STRATEGY, f"g{rep}", cfg.margin))
            n_matched += matched
            n_swapped += swapped
    n_inserted = _add_insertions(bases, int(round(cfg.insert_fraction * len(pairs))), vocab, cfg, order, rows)
    if not rows:
        return pairs, GroundingReport(0, 0.0)
    extra = Dataset.from_list(rows, features=pairs.features)
    merged = concatenate_datasets([pairs, extra]).shuffle(seed=cfg.seed)
    return merged, GroundingReport(len(rows), n_matched / max(1, n_swapped), n_inserted)


def _add_insertions(
    bases: _Bases, want: int, vocab: _Vocabulary, cfg: GroundingNegativesConfig, order: list[int], rows: list[dict],
) -> int:
    """Append `want` clause-insertion pairs to `rows`; how many were made. Foreign clauses come from the
    training posts (deduplicated in input order, so the draw is reproducible)."""
    if want == 0:
        return 0
    bodies = {p: post_body(p) for p in dict.fromkeys(bases.prompts)}
    own = {body: clauses(body, vocab, cfg.max_clause_words) for body in dict.fromkeys(bodies.values())}
    foreign = list(dict.fromkeys(c for body_clauses in own.values() for c in body_clauses))
    if not foreign:
        return 0
    rng = random.Random(cfg.seed + 1)
    made = 0
    for rep in range(want // max(1, len(order)) + 1):
        for i in order:
            if made >= want:
                return made
            body = bodies[bases.prompts[i]]
            pair = insert_clause(bases.responses[i], body, own[body], foreign, cfg, rng)
            if pair is None:
                continue
            rows.append(_synthetic_row(bases.rows[i], pair[0], pair[1], INSERT_STRATEGY, f"i{rep}", cfg.margin))
            made += 1
    return made
