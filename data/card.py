"""Data cards: what a built dataset holds, what every rule removed, and (in the simulated world) how often
upvotes agree with the hidden quality.

    from data.card import summarize
    print(summarize(json.load(open("runs/demo/data/data_card.json"))))

Written by `pipelines.build.build_datasets` as `data_card.json` (machine-readable, the report reads it) and
`data_card.md` (for people). With a gold function (`data.sim.gold.gold_score(post_text, summary)`) the card
measures the label noise of each strategy: the share of pairs whose preferred side has the higher gold
quality, for same_post pairs built WITH and WITHOUT the timestamp rule, which is the direct test of
whether that rule removes exposure-time noise. A Bayes-ceiling callable adds the best accuracy any reward
model could reach on those pairs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import datasets
from pydantic import BaseModel, ConfigDict, Field

from data.splits import hash_unit, rows_to_dataset
from data.tldr import TLDR_EXTRACTION_MEASURED

GoldFn = Callable[[str, str], float]  # (post_text, summary) -> hidden quality
# (pairs in the pair schema, name of the set) -> Bayes-optimal pair accuracy. The name says which selection
# rule made the pairs, which the ceiling must condition on: "pairs/same_post", "pairs/time_adjacent",
# "pairs_cross_post", "same_post/with_time_rule", "same_post/without_time_rule".
BayesFn = Callable[[datasets.Dataset, str], float]


class CardConfig(BaseModel):
    """What the data card computes."""

    model_config = ConfigDict(extra="forbid")

    quantiles: list[float] = Field(
        [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0], description="Quantiles reported for score distributions."
    )
    gold_max_pairs: int = Field(
        5000, ge=1, description="Gold agreement is measured on at most this many pairs (seeded hash sample)."
    )
    seed: int = Field(0, description="Seed of the gold-evaluation sample.")


def quantiles(values: list[float], qs: list[float]) -> dict[str, float]:
    """Linear-interpolation quantiles (numpy's default), keyed "q0.5"; empty input -> {}."""
    if not values:
        return {}
    xs = sorted(values)
    out = {}
    for q in qs:
        pos = q * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        out[f"q{q:g}"] = float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
    return out


def _rows(dd: datasets.DatasetDict) -> list[dict]:
    """All splits as plain dicts: one Arrow -> Python conversion (row access on a Dataset is ~100x slower)."""
    return [row for split in dd for row in dd[split].to_list()]


def gold_agreement(
    pairs: Sequence[Mapping[str, Any]], gold_fn: GoldFn, max_pairs: int, seed: int
) -> dict[str, float | None]:
    """Share of pairs whose chosen response has the higher gold score (ties counted apart).

    cross_post rows are scored against their own posts (`post_text` / `rejected_post_text`).
    """
    if len(pairs) > max_pairs:
        pairs = sorted(pairs, key=lambda r: hash_unit(r["pair_id"], f"gold-{seed}"))[:max_pairs]
    agree = ties = 0
    for row in pairs:
        g_chosen = gold_fn(row["post_text"], row["chosen"].strip())
        g_rejected = gold_fn(row.get("rejected_post_text", row["post_text"]), row["rejected"].strip())
        agree += g_chosen > g_rejected
        ties += g_chosen == g_rejected
    n = len(pairs)
    # None (JSON null), not NaN, when there are no pairs: NaN is not valid JSON.
    return {"pairs": n, "preferred_has_higher_gold": agree / n if n else None, "gold_ties": ties / n if n else None}


def scrape_counts(records_dir: str | Path) -> dict[str, dict[str, int]]:
    """What the praw scraper skipped and dropped, by reason, over all its runs into `records_dir` (read from
    its `scrape_state.json`); {} when the records came from elsewhere."""
    path = Path(records_dir) / "scrape_state.json"
    if not path.exists():
        return {}
    state = json.loads(path.read_text())
    return {k: dict(state[k]) for k in ("skipped", "dropped", "comments_status") if state.get(k)}


CROSS_POST_MEANING = (
    "A cross_post pair puts the author TL;DRs of two posts of one subreddit, posted close in time, side by side; "
    "the TL;DR of the post with the higher subreddit-normalized score is `chosen`. The votes were cast on the whole "
    "post (title, story, timing, the audience of that day), never on the TL;DR: the label says which POST people "
    "upvoted more, not which summary is better, and a reward model can only learn it through what the post and its "
    "TL;DR reveal about the post. It cannot mean 'this is a better summary of this post' (the two sides summarize "
    "different posts). Time matters: scores grow with the site and the hour a post appears; pairs are kept within "
    "`window_hours`, and later-wins below shows what time alone predicts. From a list of top posts every post is "
    "already a winner: the pairs compare the very top with the merely top."
)


def cross_post_label_shares(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | int | None]:
    """What simple non-text-quality rules predict on cross_post pairs: the chosen side's TL;DR is longer, its
    post is longer, it was posted later (ties count 1/2): the baselines a reward model must beat."""
    def share(pick) -> float | None:
        vals = [pick(r) for r in rows]
        return sum(vals) / len(vals) if vals else None

    def longer(a: str, b: str) -> float:
        na, nb = len(a.split()), len(b.split())
        return 1.0 if na > nb else 0.5 if na == nb else 0.0

    return {
        "pairs": len(rows),
        "chosen_tldr_longer": share(lambda r: longer(r["chosen"], r["rejected"])),
        "chosen_post_longer": share(lambda r: longer(r["post_text"], r["rejected_post_text"])),
        "chosen_posted_later": share(lambda r: 1.0 if r["chosen_created_utc"] > r["rejected_created_utc"]
                                     else 0.5 if r["chosen_created_utc"] == r["rejected_created_utc"] else 0.0),
    }


def _counts(dd: datasets.DatasetDict | None) -> dict[str, int]:
    return {s: len(dd[s]) for s in dd} if dd is not None else {}


def build_card(
    *,
    cfg: CardConfig,
    config: Mapping[str, Any],
    records: Mapping[str, int],
    drops: Mapping[str, int],
    pairs: datasets.DatasetDict,
    cross_post: datasets.DatasetDict | None,
    sft: datasets.DatasetDict,
    split_info: Mapping[str, Any],
    gold_fn: GoldFn | None = None,
    bayes_fn: BayesFn | None = None,
    time_rule_variants: Mapping[str, datasets.DatasetDict] | None = None,
    scrape: Mapping[str, Mapping[str, int]] | None = None,
    text_changes: Mapping[str, int] | None = None,
) -> dict:
    """The card as a JSON-ready dict: records, drops by reason, split sizes, distributions, gold checks,
    (`scrape`, see `scrape_counts`) what the scraper skipped and dropped, and what text cleaning changed
    (`text_changes`: data.prompts.clean_post's counts over the kept posts)."""
    all_pairs, all_sft = _rows(pairs), _rows(sft)
    by_sub: dict[str, dict[str, int]] = {}
    for r in all_pairs:
        per = by_sub.setdefault(r["subreddit"], {})
        per[r["strategy"]] = per.get(r["strategy"], 0) + 1
    qs = cfg.quantiles
    scores = {
        f"pairs/{col}": quantiles([r[col] for r in all_pairs], qs)
        for col in ("chosen_score", "rejected_score", "score_ratio", "margin")
    }
    scores["sft/post_score"] = quantiles([r["score"] for r in all_sft], qs)
    scores["sft/completion_chars"] = quantiles([len(r["completion"]) for r in all_sft], qs)
    # The pair sets that gold agreement and the Bayes ceiling are reported for.
    sets: dict[str, list[dict]] = {}
    for r in all_pairs:
        sets.setdefault(f"pairs/{r['strategy']}", []).append(r)
    if cross_post is not None:
        sets["pairs_cross_post"] = _rows(cross_post)
    for name, dd in (time_rule_variants or {}).items():
        sets[f"same_post/{name}"] = _rows(dd)
    gold = (
        {k: gold_agreement(v, gold_fn, cfg.gold_max_pairs, cfg.seed) for k, v in sorted(sets.items())}
        if gold_fn is not None
        else {}
    )
    bayes = {}
    if bayes_fn is not None:
        features = next(iter(pairs.values())).features
        for k, v in sorted(sets.items()):
            if v:
                f = cross_post[next(iter(cross_post))].features if k == "pairs_cross_post" else features
                bayes[k] = float(bayes_fn(rows_to_dataset(v, f), k))
    splits = {"pairs": _counts(pairs), "sft": _counts(sft)}
    cross_post_label = None
    if cross_post is not None:
        splits["pairs_cross_post"] = _counts(cross_post)
        cross_post_label = {"meaning": CROSS_POST_MEANING, **cross_post_label_shares(sets["pairs_cross_post"])}
    summary: dict[str, float] = {f"{name}_{s}": n for name, c in splits.items() for s, n in c.items()}
    summary.update({f"gold_agreement/{k}": v["preferred_has_higher_gold"] for k, v in gold.items()})
    summary.update({f"bayes_ceiling/{k}": v for k, v in bayes.items()})
    summary["dropped_total"] = sum(drops.values())
    summary.update({f"scrape_skipped/{k}": v for k, v in (scrape or {}).get("skipped", {}).items()})
    return {
        "records": dict(records),
        "scrape": {k: dict(sorted(v.items())) for k, v in (scrape or {}).items()},
        "splits": splits,
        "split_rule": dict(split_info),
        "drops": dict(sorted(drops.items())),
        "pairs_by_subreddit_strategy": dict(sorted(by_sub.items())),
        "score_quantiles": scores,
        "gold_agreement": gold,
        "bayes_ceiling": bayes,
        "text_changes": dict(sorted((text_changes or {}).items())),
        "tldr_extraction": TLDR_EXTRACTION_MEASURED,
        "cross_post_label": cross_post_label,
        "summary": summary,
        "config": dict(config),
    }


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(_fmt(x) for x in row) + " |" for row in rows]


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card for people: one table per section."""
    splits = ("train", "validation", "test")
    lines = ["# Data card", "", "## Records", ""]
    lines += [f"- {k}: {v}" for k, v in card["records"].items()]
    scrape = card.get("scrape") or {}
    if scrape:
        lines += ["", "## Scrape: skipped and dropped, by reason", "",
                  "Skipped: reddit.com refused the thread or listing for good (404 removed or banned, 403 private "
                  "or quarantined, 451 legal) or a `more` stub held nothing; a listed post whose thread was "
                  "refused is kept without comments (`comments_status`).", ""]
        rows = [[group, reason, n] for group in ("skipped", "dropped", "comments_status")
                for reason, n in scrape.get(group, {}).items()]
        lines += _table(["count", "reason", "n"], rows)
    lines += ["", "## Split sizes", ""]
    split_rows = [[name, *(counts.get(s, 0) for s in splits)] for name, counts in card["splits"].items()]
    lines += _table(["dataset", *splits], split_rows)
    lines += ["", f"Split rule: {card['split_rule']}", "", "## Rows dropped, by rule", ""]
    lines += _table(["rule", "rows"], [[k, v] for k, v in card["drops"].items()])
    if card.get("text_changes"):
        lines += ["", "## Text cleaning", "", "Kept posts each rule changed (data/text.py, data/tldr.py) and what "
                  "became of their author TL;DRs.", ""]
        lines += _table(["rule", "posts"], [[k, v] for k, v in card["text_changes"].items()])
        m = card.get("tldr_extraction") or {}
        if m:
            lines += ["", f"TL;DR extraction on {m['posts']} hand-checked real posts ({m['part']} part): precision "
                      f"{m['precision']:.3f}, recall {m['recall']:.3f} ({m['source']})."]
    by_sub = card["pairs_by_subreddit_strategy"]
    strategies = sorted({s for per in by_sub.values() for s in per})
    lines += ["", "## Pairs per subreddit and strategy", ""]
    lines += _table(["subreddit", *strategies], [[f"r/{sub}", *(per.get(s, 0) for s in strategies)]
                                                 for sub, per in by_sub.items()])
    lines += ["", "## Score distributions (quantiles)", ""]
    for name, qv in card["score_quantiles"].items():
        lines.append(f"- {name}: " + (", ".join(f"{k}={_fmt(v)}" for k, v in qv.items()) or "(empty)"))
    label = card.get("cross_post_label")
    if label:
        lines += ["", "## What a cross_post label means", "", label["meaning"], "",
                  f"On these {label['pairs']} pairs the chosen side's TL;DR is the longer one in "
                  f"{_fmt(label['chosen_tldr_longer'])}, its post the longer one in {_fmt(label['chosen_post_longer'])}, "
                  f"and it was posted later in {_fmt(label['chosen_posted_later'])} (ties count 1/2)."]
    gold, bayes = card["gold_agreement"], card["bayes_ceiling"]
    if gold or bayes:
        lines += ["", "## Agreement with gold quality", "",
                  "Share of pairs whose preferred side has the higher gold score. The timestamp rule's effect: "
                  "compare `same_post/with_time_rule` and `same_post/without_time_rule`.", ""]
        rows = [[name, gold.get(name, {}).get("pairs"), gold.get(name, {}).get("preferred_has_higher_gold"),
                 gold.get(name, {}).get("gold_ties"), bayes.get(name)] for name in sorted(set(gold) | set(bayes))]
        lines += _table(["pairs", "n", "preferred has higher gold", "gold ties", "Bayes ceiling"], rows)
    return "\n".join(lines) + "\n"


def summarize(card: Mapping[str, Any], top_drops: int = 8) -> str:
    """A few lines for the CLI: split sizes, the largest drop reasons, gold agreement."""
    out = []
    for name, counts in card["splits"].items():
        out.append(f"{name:>17}: " + "  ".join(f"{s}={n}" for s, n in counts.items()))
    biggest = sorted(card["drops"].items(), key=lambda kv: -kv[1])[:top_drops]
    if biggest:
        out.append("   largest drops: " + ", ".join(f"{k}={v}" for k, v in biggest))
    for name, g in card["gold_agreement"].items():
        ceiling = card["bayes_ceiling"].get(name)
        extra = f" (Bayes ceiling {ceiling:.3f})" if ceiling is not None else ""
        out.append(f"  gold agreement {name}: {_fmt(g['preferred_has_higher_gold'])} on {g['pairs']} pairs{extra}")
    return "\n".join(out)


def write_card(card: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """`data_card.json` and `data_card.md` under out_dir (each written whole, then renamed)."""
    out_dir = Path(out_dir)
    paths = (out_dir / "data_card.json", out_dir / "data_card.md")
    for path, text in zip(paths, (json.dumps(card, indent=2, default=str), render_markdown(card))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths
