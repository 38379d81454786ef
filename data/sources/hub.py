"""Public preference datasets mapped to our pair schema: `stanfordnlp/SHP` and `openai/summarize_from_feedback`.

    from data.sources.hub import HubConfig, load_hub_pairs
    result = load_hub_pairs(HubConfig(dataset="shp", path="data/SHP"))   # or path=None: the hub (online)
    result.pairs["train"][0]["prompt"]

Both become the pair schema of docs/architecture.md, so the reward model trains on them exactly as on our
scraped pairs:

- SHP (strategy "shp"): each row is already a pair of top-level comments under one post, with their scores
  and `labels` (1: A preferred). `history` is the post's title and body run together (SHP keeps no separate
  title), so it becomes the prompt's POST with an empty TITLE. `score_ratio` is preferred/dispreferred (>= 1).
- summarize_from_feedback, `comparisons` config (strategy "human"): two summaries of a Reddit TL;DR post and
  the labeller's `choice`. There are no upvotes: chosen/rejected scores are 1/0 and `score_ratio` is 1.0, so
  a score-ratio filter downstream must leave strategy "human" alone. CNN/DM rows (no post) are dropped and
  counted. Its `split` field (train / valid1 / valid2) gives train / validation / test.

Local files in the hub's shape (jsonl / json / parquet) are read the same way: one file (split from a `split`
column, else "train"), or a directory whose files are named by split (`train*.json`, `validation*`/`valid*`,
`test*`, searched recursively like SHP's per-domain folders). Nothing downloads unless `path` is None.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import datasets
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from data.pairs import PAIR_FEATURES, MarginConfig, pair_margin, score_ratio
from data.prompts import PromptConfig, as_token_counter, format_response, prepare_post

HUB_NAMES = {"shp": "stanfordnlp/SHP", "summarize_from_feedback": "openai/summarize_from_feedback"}
SPLITS = ("train", "validation", "test")
# summarize_from_feedback's own split names, and the names files in a local directory may carry.
SPLIT_ALIASES = {"train": "train", "valid1": "validation", "valid2": "test", "validation": "validation",
                 "valid": "validation", "dev": "validation", "test": "test"}

class HubConfig(BaseModel):
    """Which public dataset to load, from where, and which of its pairs to keep."""

    model_config = ConfigDict(extra="forbid")

    dataset: Literal["shp", "summarize_from_feedback"] = Field(
        ..., description="`shp` (stanfordnlp/SHP, strategy shp) or `summarize_from_feedback` (strategy human)."
    )
    path: str | None = Field(
        None,
        description="Local file or directory in the hub's shape (jsonl/json/parquet); None loads the hub "
        "dataset by name with `datasets.load_dataset` (needs network or a warm HF cache).",
    )
    hub_name: str | None = Field(None, description="Override the hub repository name (None: the usual one).")
    subreddits: list[str] = Field(
        default_factory=list, description="Keep only these subreddits (SHP domains without `_train`); empty: all."
    )
    min_score_ratio: float = Field(
        1.0, ge=1.0, description="SHP only: drop pairs whose preferred/dispreferred score ratio is below this "
        "(the SHP authors suggest 2 for cleaner labels)."
    )
    max_pairs_per_post: int | None = Field(
        None, gt=0, description="Keep at most this many pairs per post (SHP posts can have hundreds); None: all."
    )
    max_pairs_per_split: int | None = Field(None, gt=0, description="Cap each split (for quick runs); None: all.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Prompt budget and post filters.")
    margin: MarginConfig = Field(
        default_factory=MarginConfig, description="SHP pairs' margin from their score ratio (human pairs: 0)."
    )


@dataclass
class HubResult:
    """The pairs (train/validation/test) and how many source rows were dropped, by reason."""

    pairs: datasets.DatasetDict
    drops: dict[str, int] = field(default_factory=dict)
    rows_read: int = 0


# ---------------------------------------------------------------------------------------------- reading


def _builder(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        return "json"
    raise ValueError(f"HubConfig.path: {path} is neither json/jsonl nor parquet")


def _split_of_file(path: Path) -> str | None:
    stem = path.name.lower().split(".")[0]
    for alias, split in sorted(SPLIT_ALIASES.items(), key=lambda kv: -len(kv[0])):
        if stem.startswith(alias):
            return split
    return None


def read_local(path: str | Path) -> datasets.DatasetDict:
    """A file (one "train" split) or a directory of split-named files -> raw rows per split."""
    path = Path(path).expanduser()
    if path.is_file():
        single = datasets.load_dataset(_builder(path), data_files=str(path), split="train")
        return datasets.DatasetDict({"train": single})
    if not path.is_dir():
        raise FileNotFoundError(f"HubConfig.path: {path} does not exist")
    files: dict[str, list[str]] = {}
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".parquet", ".gz") and (split := _split_of_file(f)):
            files.setdefault(split, []).append(str(f))
    if not files:
        raise FileNotFoundError(
            f"HubConfig.path: {path} holds no train*/validation*/test* .json/.jsonl/.parquet files"
        )
    builders = {_builder(Path(f)) for fs in files.values() for f in fs}
    if len(builders) > 1:
        raise ValueError(f"HubConfig.path: {path} mixes json and parquet files; keep one format")
    return datasets.load_dataset(builders.pop(), data_files=files)


def read_raw(cfg: HubConfig) -> datasets.DatasetDict:
    """Raw rows of the dataset in its own shape, from `cfg.path` or the hub."""
    if cfg.path is not None:
        return read_local(cfg.path)
    name = cfg.hub_name or HUB_NAMES[cfg.dataset]
    config = "comparisons" if cfg.dataset == "summarize_from_feedback" else None
    try:
        return datasets.load_dataset(name, config)
    except Exception as err:  # offline, missing cache, gated: say what to do instead
        raise RuntimeError(
            f"could not load {name!r} from the hub ({type(err).__name__}: {err}); download it once and set "
            "HubConfig.path to the local files"
        ) from err


# ---------------------------------------------------------------------------------------------- mapping


def _text_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _pair_id(strategy: str, *parts: object) -> str:
    return f"{strategy}-" + hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def _post_row(post_id: str, subreddit: str, title: str, body: str) -> dict:
    """The fields `prepare_post` reads, so hub prompts go through the same TL;DR removal and truncation."""
    return {"id": post_id, "subreddit": subreddit, "title": title, "selftext": body, "score": 0,
            "created_utc": 0.0, "author": ""}


def shp_pair(
    row: Mapping[str, Any], cfg: HubConfig, count_tokens: Callable[[str], int] | None
) -> tuple[dict | None, str | None]:
    """One SHP row -> (pair, None) or (None, drop reason)."""
    try:
        a_first = int(row["labels"]) == 1
        score_a, score_b = int(row["score_A"]), int(row["score_B"])
        texts = (row["human_ref_A"], row["human_ref_B"])
        ids = (row["c_root_id_A"], row["c_root_id_B"])
        times = (float(row["created_at_utc_A"]), float(row["created_at_utc_B"]))
        post_id, history, domain = str(row["post_id"]), row["history"], str(row["domain"])
    except (KeyError, TypeError, ValueError):
        return None, "malformed"
    subreddit = domain.rsplit("_", 1)[0] if domain.endswith(("_train", "_validation", "_test")) else domain
    if cfg.subreddits and subreddit.lower() not in {s.lower() for s in cfg.subreddits}:
        return None, "subreddit"
    c, r = (0, 1) if a_first else (1, 0)
    scores = (score_a, score_b)
    ratio = row.get("score_ratio")
    ratio = float(ratio) if ratio is not None else score_ratio(scores[c], scores[r])
    if ratio < cfg.min_score_ratio:
        return None, "score_ratio"
    post, reason = prepare_post(_post_row(post_id, subreddit, "", history or ""), cfg.prompt, count_tokens)
    if post is None:
        return None, reason
    return {
        "pair_id": _pair_id("shp", post_id, ids[c], ids[r]),
        "post_id": post_id,
        "subreddit": subreddit,
        "strategy": "shp",
        "prompt": post.prompt,
        "chosen": format_response(texts[c]),
        "rejected": format_response(texts[r]),
        "chosen_id": str(ids[c]),
        "rejected_id": str(ids[r]),
        "chosen_score": scores[c],
        "rejected_score": scores[r],
        "score_ratio": ratio,
        "margin": pair_margin(ratio, cfg.margin),
        "chosen_created_utc": times[c],
        "rejected_created_utc": times[r],
        "post_text": post.post_text,
    }, None


def summarize_pair(
    row: Mapping[str, Any], cfg: HubConfig, count_tokens: Callable[[str], int] | None
) -> tuple[dict | None, str | None]:
    """One summarize_from_feedback comparison -> (pair, None) or (None, drop reason)."""
    info, summaries = row.get("info"), row.get("summaries")
    try:
        choice = int(row["choice"])
        texts = [s["text"] for s in summaries]  # type: ignore[union-attr]
        policies = [s.get("policy") or "" for s in summaries]  # type: ignore[union-attr]
    except (KeyError, TypeError, ValueError):
        return None, "malformed"
    if not isinstance(info, Mapping) or len(texts) != 2 or choice not in (0, 1):
        return None, "malformed"
    if not info.get("post"):
        return None, "not_reddit"  # CNN/DailyMail rows carry an article instead of a post
    post_id, subreddit = str(info.get("id") or ""), str(info.get("subreddit") or "")
    if cfg.subreddits and subreddit.lower() not in {s.lower() for s in cfg.subreddits}:
        return None, "subreddit"
    post, reason = prepare_post(_post_row(post_id, subreddit, info.get("title") or "", info["post"]), cfg.prompt,
                                count_tokens)
    if post is None:
        return None, reason
    c, r = choice, 1 - choice
    return {
        "pair_id": _pair_id("human", post_id, texts[c], texts[r], row.get("worker"), row.get("batch")),
        "post_id": post_id,
        "subreddit": subreddit,
        "strategy": "human",
        "prompt": post.prompt,
        "chosen": format_response(texts[c]),
        "rejected": format_response(texts[r]),
        "chosen_id": f"{policies[c]}:{_text_id(texts[c])}",
        "rejected_id": f"{policies[r]}:{_text_id(texts[r])}",
        "chosen_score": 1,
        "rejected_score": 0,
        "score_ratio": 1.0,
        "margin": 0.0,
        "chosen_created_utc": 0.0,
        "rejected_created_utc": 0.0,
        "post_text": post.post_text,
    }, None


def _row_split(row: Mapping[str, Any], default: str) -> str:
    value = row.get("split")
    return SPLIT_ALIASES.get(str(value).lower(), default) if value else default


def pairs_from_rows(
    raw: Mapping[str, Iterable[Mapping[str, Any]]], cfg: HubConfig, count_tokens: Any | None = None
) -> HubResult:
    """Raw rows per split -> pair DatasetDict (train/validation/test, empty where none) and drop counts."""
    mapper = shp_pair if cfg.dataset == "shp" else summarize_pair
    count = as_token_counter(count_tokens) if count_tokens is not None else None
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    per_post: Counter[tuple[str, str]] = Counter()
    seen: set[str] = set()
    drops: Counter[str] = Counter()
    n = 0
    for source_split, rows in raw.items():
        default = SPLIT_ALIASES.get(source_split, "train")
        for row in tqdm(rows, desc=f"{cfg.dataset}/{source_split}", unit="row", leave=False):
            n += 1
            pair, reason = mapper(row, cfg, count)
            if pair is None:
                drops[reason or "unknown"] += 1
                continue
            split = _row_split(row, default)
            if pair["pair_id"] in seen:
                drops["duplicate"] += 1
                continue
            if cfg.max_pairs_per_post is not None and per_post[split, pair["post_id"]] >= cfg.max_pairs_per_post:
                drops["max_pairs_per_post"] += 1
                continue
            if cfg.max_pairs_per_split is not None and len(out[split]) >= cfg.max_pairs_per_split:
                drops["max_pairs_per_split"] += 1
                continue
            seen.add(pair["pair_id"])
            per_post[split, pair["post_id"]] += 1
            out[split].append(pair)
    pairs = datasets.DatasetDict(
        {s: datasets.Dataset.from_list(rows, features=PAIR_FEATURES) for s, rows in out.items()}
    )
    return HubResult(pairs=pairs, drops=dict(drops), rows_read=n)


def load_hub_pairs(cfg: HubConfig, count_tokens: Any | None = None) -> HubResult:
    """Load `cfg.dataset` (local files or the hub) as pairs; `count_tokens` (a tokenizer or str -> int)
    enables the prompt token budget of `cfg.prompt`."""
    return pairs_from_rows(read_raw(cfg), cfg, count_tokens)
