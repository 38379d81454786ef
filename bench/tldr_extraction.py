"""Author TL;DR extraction on hand-checked real posts: precision and recall, the old extractor beside ours.

    python bench/tldr_extraction.py                       # the hand-checked fixture, every part
    python bench/tldr_extraction.py --errors dev          # also print every miss of the dev part
    python bench/tldr_extraction.py --corpus PATH/RS_top_tldr.zst   # + all 19k posts
    python bench/tldr_extraction.py sample --n 80 --seed 24 --after 22:160 23:80 --corpus ...  # re-draw the ids

The fixture (tests/fixtures/top_tldr/handchecked.jsonl) holds 320 of the 19,043 real self-posts of
RS_top_tldr.zst (umbrae/reddit-top-2.5-million as Pushshift lines) with the author's TL;DR written out by hand (markup read as text; null when
the post mentions tl;dr without giving one, or gives a non-summary such as "see title"), in four parts, each
row naming its part (docs/tldr-extraction.md has the numbers):
- dev (79) and heldout1 (81): `sample --n 160 --seed 22` (posts sorted by id, random.Random(22).sample),
  split by data.splits.hash_unit(id, "tldr-bench") < 0.5. The rules were developed on dev; heldout1 was
  labelled with them frozen (commit 7105049) and scored once, then its misses were used to improve them.
- heldout2 (80): `sample --n 80 --seed 23 --after 22:160`, from the posts left after the first sample;
  labelled with the rules frozen (commit 30d520d), scored once, then used to improve them too.
- heldout3 (80): `sample --n 80 --seed 24 --after 22:160 23:80`; labelled with the rules frozen (commit
  bd841ec) and scored once: the clean estimate, shown on the data card (data.tldr.TLDR_EXTRACTION_MEASURED).

Definitions, per extractor:
- a prediction is the TL;DR the extractor returns for a post (None = no prediction);
- it is correct when it equals the hand label after whitespace normalisation (runs of whitespace -> one
  space, ends stripped); nothing else is forgiven (a stray `**` or a trailing "EDIT: ..." is wrong);
- precision = correct / predictions; recall = correct / posts whose label is not null.

The old extractor is the regex rule of data/prompts.py before this bench existed, copied below unchanged.
`--corpus` adds counts over every post of a dump file (no labels there): how many TL;DRs each extractor
finds, how many end in stray markup or carry an EDIT line, and the new extractor's rejections by reason.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import zstandard

from data.text import clean_text
from data.tldr import find_tldr

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "top_tldr" / "handchecked.jsonl"
PARTS = ("dev", "heldout1", "heldout2", "heldout3")
Extractor = Callable[[str], "str | None"]

# --- the old extractor (data/prompts.py at commit 2995f33), kept as the baseline --------------------------
_OLD_CORE = r"\btl[ \t]*[;:,/.\-]?[ \t]*dr\b"
_OLD_OPEN = r"(?:[#>*_(\[][ \t]*)*"
_OLD_CLOSE = r"[ \t*_)\]]*[:;,.\-\u2013\u2014=>]*[ \t*_]*\s*"
_OLD_MARKER = re.compile(
    r"(?:^[ \t]*|(?<=[.!?)\]\"'*])[ \t]+)" + _OLD_OPEN + _OLD_CORE + _OLD_CLOSE, re.IGNORECASE | re.MULTILINE
)
_OLD_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def old_tldr(selftext: str) -> str | None:
    """The last marker that starts a line or follows a sentence end opens the TL;DR: its paragraph."""
    text = clean_text(selftext)
    matches = list(_OLD_MARKER.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].lstrip()
    blank = _OLD_BLANK_LINE.search(rest)
    return (rest[: blank.start()] if blank else rest).strip() or None


def new_tldr(selftext: str) -> str | None:
    return find_tldr(selftext).tldr


EXTRACTORS: dict[str, Extractor] = {"old": old_tldr, "new": new_tldr}


# --- scoring ----------------------------------------------------------------------------------------------
def normalize(text: str | None) -> str | None:
    return None if text is None else " ".join(text.split())


def score(rows: list[dict], extract: Extractor) -> dict:
    """Precision and recall of one extractor on labelled rows (definitions in the module docstring)."""
    predicted = correct = 0
    misses = []
    for row in rows:
        pred, label = normalize(extract(row["selftext"])), normalize(row["expected_tldr"])
        predicted += pred is not None
        ok = pred is not None and pred == label
        correct += ok
        if pred != label:
            misses.append((row["id"], label, pred))
    with_tldr = sum(r["expected_tldr"] is not None for r in rows)
    return {
        "posts": len(rows),
        "with_tldr": with_tldr,
        "predicted": predicted,
        "correct": correct,
        "precision": correct / predicted if predicted else float("nan"),
        "recall": correct / with_tldr if with_tldr else float("nan"),
        "misses": misses,
    }


def load_fixture(path: Path = FIXTURE) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, row in enumerate(rows):
        missing = {"id", "part", "selftext", "expected_tldr"} - set(row)
        if missing:
            raise ValueError(f"{path}: line {i + 1} lacks the field(s) {sorted(missing)}")
    return rows


def report(rows: list[dict], show_errors: set[str]) -> dict[str, dict[str, dict]]:
    parts = {p: [r for r in rows if r["part"] == p] for p in PARTS} | {"all": rows}
    results = {p: {name: score(rs, fn) for name, fn in EXTRACTORS.items()} for p, rs in parts.items()}
    print(f"{'part':<8} {'posts':>5} {'w/ TL;DR':>8} | {'old P':>6} {'old R':>6} | {'new P':>6} {'new R':>6}"
          f" | {'P new/old':>9} {'R new/old':>9}")
    for p, res in results.items():
        old, new = res["old"], res["new"]
        print(f"{p:<8} {old['posts']:>5} {old['with_tldr']:>8} | {old['precision']:>6.3f} {old['recall']:>6.3f} | "
              f"{new['precision']:>6.3f} {new['recall']:>6.3f} | {new['precision'] / old['precision']:>9.2f} "
              f"{new['recall'] / old['recall']:>9.2f}")
    print("(correct / predicted, correct / with TL;DR)  " + "  ".join(
        f"{p}: old {r['old']['correct']}/{r['old']['predicted']}, {r['old']['correct']}/{r['old']['with_tldr']};"
        f" new {r['new']['correct']}/{r['new']['predicted']}, {r['new']['correct']}/{r['new']['with_tldr']}"
        for p, r in results.items() if p.startswith("heldout")))
    for p in sorted(show_errors & set(parts)):
        for name in EXTRACTORS:
            for pid, label, pred in results[p][name]["misses"]:
                print(f"\n[{p} {name} miss] {pid}\n  label: {label!r}\n  got:   {pred!r}")
    return results


# --- the corpus: counts without labels --------------------------------------------------------------------
def read_posts(path: str | Path) -> Iterator[dict]:
    """Submission objects of a `.zst` (long window, as the monthly dumps) or plain NDJSON file."""
    with open(path, "rb") as raw:
        stream = raw
        if str(path).endswith(".zst"):
            stream = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw)
        for line in io.TextIOWrapper(stream, encoding="utf-8"):
            if line.strip():
                yield json.loads(line)


_STRAY_MARKUP = re.compile(r"(?:\*|_|~~)$|^(?:\*|_|~~)")
_EDIT_LINE = re.compile(r"(?im)^[\W_]*(?:edit|update)\b")


def _new_with_reason(selftext: str) -> tuple[str | None, str | None]:
    found = find_tldr(selftext)
    return found.tldr, found.rejected


def corpus_counts(path: str | Path) -> None:
    """Each extractor over every post of a dump: TL;DRs found, stray markup or an EDIT line inside them,
    the new extractor's rejections, and posts per second (old is a single regex: the floor)."""
    posts = [post.get("selftext") or "" for post in read_posts(path)]
    counts: dict[str, Counter[str]] = {name: Counter() for name in EXTRACTORS}
    seconds: dict[str, float] = {}
    for name in EXTRACTORS:
        start = time.perf_counter()
        found = [(old_tldr(t), None) if name == "old" else _new_with_reason(t) for t in posts]
        seconds[name] = time.perf_counter() - start
        c = counts[name]
        for tldr, rejected in found:
            if rejected:
                c[f"rejected/{rejected}"] += 1
            if tldr is None:
                continue
            c["tldr"] += 1
            c["stray_markup"] += bool(_STRAY_MARKUP.search(tldr))
            c["edit_line_inside"] += bool(_EDIT_LINE.search(tldr))
    print(f"\n{path}: {len(posts)} posts")
    print(f"{'':<26} {'old':>7} {'new':>7}")
    for k in sorted(set(counts["old"]) | set(counts["new"]), key=lambda k: (k.startswith("rejected"), k)):
        print(f"{k:<26} {counts['old'][k]:>7} {counts['new'][k]:>7}")
    print(f"{'posts/s':<26} {len(posts) / seconds['old']:>7.0f} {len(posts) / seconds['new']:>7.0f}"
          f"   (new/old {seconds['old'] / seconds['new']:.3f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="score", choices=["score", "sample"])
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--errors", nargs="*", default=[], help="print the misses of these parts (dev, heldout1, ...)")
    parser.add_argument("--corpus", help="a dump of posts (.zst or NDJSON) to count over, or to sample from")
    parser.add_argument("--n", type=int, default=160, help="sample size (sample)")
    parser.add_argument("--seed", type=int, default=22, help="sample seed (sample)")
    parser.add_argument("--after", nargs="*", default=[], metavar="SEED:N",
                        help="sample: draw after these earlier samples (in order) were taken out of the posts")
    parser.add_argument("--quick", action="store_true", help="accepted for `make bench`; the run is quick anyway")
    args = parser.parse_args(argv)
    if args.command == "sample":
        if not args.corpus:
            parser.error("sample needs --corpus (the path of RS_top_tldr.zst)")
        posts = sorted(read_posts(args.corpus), key=lambda p: p["id"])
        for earlier in args.after:
            seed, n = (int(x) for x in earlier.split(":"))
            taken = {p["id"] for p in random.Random(seed).sample(posts, n)}
            posts = [p for p in posts if p["id"] not in taken]
        for post in random.Random(args.seed).sample(posts, args.n):
            print(json.dumps({"id": post["id"], "subreddit": post["subreddit"]}))
        return
    report(load_fixture(args.fixture), set(args.errors))
    if args.corpus:
        corpus_counts(args.corpus)


if __name__ == "__main__":
    sys.exit(main())
