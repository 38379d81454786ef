"""Pushshift / Arctic-Shift monthly dumps -> a records directory (posts/, comments/ Parquet shards).

    python -c "from data.sources.dumps import DumpConfig, ingest_dumps; \
        print(ingest_dumps(DumpConfig(paths=['dumps/RS_2023-01.zst', 'dumps/RC_2023-01.zst'], \
        subreddits=['tifu']), 'runs/demo/records'))"

The files are zstd-compressed NDJSON (one submission or comment per line) written with a 2 GiB window,
so the decompressor needs `max_window_size=2**31`. A month of comments is ~30 GB of text: the file is
STREAMED in compressed chunks and never held in memory.

Steps per run:
1. Order the files: submissions (RS_*) before comments (RC_*), because a comment is kept only when its
   post was kept (joined on `link_id`). Comments arrive for days after their post: include the next
   month's RC file too, or late-month posts lose their later comments.
2. For each line: a cheap regex on the raw bytes drops lines of other subreddits before any JSON parsing
   (most of a dump), then `json.loads`, the shared converters of `data.records`, and the date/score filters.
3. Rows go to `ShardWriter`s; at the end of each file the writers are flushed and the file is recorded as
   done in `ingest_state.json` (written atomically) with the shards it produced.
4. A rerun skips files already done; shards of a file that was interrupted part-way are deleted, so the
   output is resumed, never mixed.

Real dumps drift (see `data.records`): malformed lines (bad JSON, non-objects, missing fields) and deleted
content are counted by reason and skipped, never fatal.
"""

from __future__ import annotations

import datetime as dt
import glob
import io
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import pyarrow.parquet as pq
import zstandard
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from data.records import DeletedContent, MalformedRecord, comment_from_json, post_from_json
from data.shards import ShardWriter, shard_paths

STATE_FILE = "ingest_state.json"
ZSTD_WINDOW = 2**31  # Pushshift/Arctic-Shift files are written with --long=31
CHUNK_BYTES = 1 << 22  # decompressed bytes per read; lines are split by us (faster than TextIOWrapper)

Kind = Literal["posts", "comments"]


class DumpConfig(BaseModel):
    """What to read from the dump files and what to keep."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(
        ...,
        min_length=1,
        description="Dump files or glob patterns (`RS_*.zst` submissions, `RC_*.zst` comments; `.ndjson`/`.jsonl` "
        "plain text also read). Files whose name says neither RS/RC nor submissions/comments are sniffed.",
    )
    subreddits: list[str] = Field(
        default_factory=list,
        description="Subreddits to keep (case-insensitive, without `r/`); empty keeps every subreddit.",
    )
    start_date: dt.date | None = Field(None, description="Keep posts created on or after this UTC date.")
    end_date: dt.date | None = Field(None, description="Keep posts created before this UTC date (exclusive).")
    min_post_score: int | None = Field(None, description="Drop posts whose score is below this.")
    min_comment_score: int | None = Field(None, description="Drop comments whose score is below this.")
    top_level_only: bool = Field(
        True, description="Keep only comments that reply to the post itself (what pairs are built from)."
    )
    salt: str = Field(
        "upvote-rlhf",
        description="Salt for hashing author names; an empty string stores plain names (explicit opt-out).",
    )
    rows_per_shard: int = Field(5000, gt=0, description="Rows per Parquet shard (at most this many lost on a crash).")
    prefilter: bool = Field(
        True,
        description="Skip lines of other subreddits with a regex on the raw bytes before JSON parsing "
        "(about an order of magnitude faster; such lines are counted as `prefiltered`, not parsed).",
    )
    resume: bool = Field(True, description="Skip files recorded as fully ingested in `ingest_state.json`.")
    progress: bool = Field(True, description="Show a tqdm bar per file (compressed bytes).")

    @field_validator("subreddits")
    @classmethod
    def _clean_subreddits(cls, value: list[str]) -> list[str]:
        out = []
        for name in value:
            name = name.strip().removeprefix("/").removeprefix("r/")
            if not re.fullmatch(r"[A-Za-z0-9_]{2,21}", name):
                raise ValueError(f"subreddits: {name!r} is not a subreddit name (letters, digits, _; 2-21 chars)")
            out.append(name)
        return out


@dataclass
class IngestStats:
    """Counts for one ingest (summed over files); `dropped` is keyed by reason."""

    files: int = 0
    files_skipped: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    posts_kept: int = 0
    comments_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def add(self, other: "IngestStats") -> None:
        for name in ("files", "files_skipped", "bytes_read", "lines_read", "posts_kept", "comments_kept"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds
        for reason, n in other.dropped.items():
            self.drop(reason, n)

    @property
    def kept(self) -> int:
        return self.posts_kept + self.comments_kept

    def to_dict(self) -> dict:
        return asdict(self) | {"kept": self.kept}


# ---------------------------------------------------------------------------------------------- reading


def iter_lines(path: str | Path, progress: bool = False) -> Iterator[bytes]:
    """Raw lines (without the newline) of a `.zst` or plain NDJSON file, streamed in chunks.

    Progress (optional) is in compressed bytes, the only size known up front.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as raw, tqdm(
        total=size, unit="B", unit_scale=True, desc=path.name, disable=not progress, leave=False
    ) as bar:
        if path.suffix == ".zst":
            dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW)
            stream: io.RawIOBase = dctx.stream_reader(raw, read_size=1 << 20)
        else:
            stream = raw
        carry = b""
        seen = 0
        while True:
            chunk = stream.read(CHUNK_BYTES)
            if not chunk:
                break
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            yield from lines
            position = raw.tell()
            bar.update(position - seen)
            seen = position
        if carry:
            yield carry  # last line without a trailing newline (or a truncated one: counted as malformed)


def iter_candidates(
    path: str | Path, regex: re.Pattern[bytes] | None, progress: bool = False
) -> Iterator[tuple[int, bytes | None]]:
    """(lines skipped by the prefilter since the last item, next candidate line or None at the end).

    With a regex, each decompressed chunk is searched as a whole and only the lines around a match are cut
    out: the ~95% of lines from other subreddits never reach Python one by one. Without one, every line is
    a candidate.
    """
    if regex is None:
        for line in iter_lines(path, progress=progress):
            yield 0, line
        return
    path = Path(path)
    with open(path, "rb") as raw, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, disable=not progress, leave=False
    ) as bar:
        stream = (
            zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW).stream_reader(raw, read_size=1 << 20)
            if path.suffix == ".zst"
            else raw
        )
        carry = b""
        seen = 0
        while chunk := stream.read(CHUNK_BYTES):
            buf = carry + chunk
            cut = buf.rfind(b"\n") + 1
            body, carry = buf[:cut], buf[cut:]
            done = 0  # offset just past the last line handed out
            for match in regex.finditer(body):
                if match.start() < done:
                    continue  # a second match on a line already handed out
                start = body.rfind(b"\n", 0, match.start()) + 1
                end = body.find(b"\n", match.end())
                yield body.count(b"\n", done, start), body[start:end]
                done = end + 1
            yield body.count(b"\n", done), None
            position = raw.tell()
            bar.update(position - seen)
            seen = position
        if carry:
            yield (0, carry) if regex.search(carry) else (1, None)


def file_kind(path: str | Path) -> Kind | None:
    """`posts` for RS_/submissions files, `comments` for RC_/comments files, None when the name says neither."""
    name = Path(path).name.lower()
    if name.startswith("rs_") or "submission" in name:
        return "posts"
    if name.startswith("rc_") or "comment" in name:
        return "comments"
    return None


def sniff_kind(path: str | Path, max_lines: int = 100) -> Kind:
    """Look at the first readable lines: comments have `body` and `link_id`, submissions have `title`."""
    for i, line in enumerate(iter_lines(path)):
        if i >= max_lines:
            break
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            if "body" in obj and "link_id" in obj:
                return "comments"
            if "title" in obj:
                return "posts"
    raise ValueError(
        f"{path}: cannot tell submissions from comments (no RS_/RC_ prefix and no readable line with "
        "`title` or `body`+`link_id` among the first lines); rename it RS_*.zst or RC_*.zst"
    )


def expand_paths(patterns: list[str]) -> list[Path]:
    """Globs -> existing files (sorted, deduplicated); a pattern matching nothing is an error."""
    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files:
            raise FileNotFoundError(f"DumpConfig.paths: {pattern!r} matches no file")
        out.extend(f for f in files if f not in out)
    return out


def _subreddit_regex(subreddits: list[str]) -> re.Pattern[bytes] | None:
    if not subreddits:
        return None
    names = b"|".join(re.escape(s.encode()) for s in subreddits)
    # Matches `"subreddit":"tifu"` with any JSON spacing; names are ASCII [A-Za-z0-9_], so no escapes.
    # Case-insensitive only around the names, so `"subreddit"` stays a literal the engine can skip to.
    return re.compile(rb'"subreddit"\s*:\s*"(?i:' + names + rb')"')


def _epoch(day: dt.date | None) -> float | None:
    return None if day is None else dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()


# ---------------------------------------------------------------------------------------------- one file


class _Filter:
    """The per-line decisions, precomputed from the config."""

    def __init__(self, cfg: DumpConfig) -> None:
        self.cfg = cfg
        self.regex = _subreddit_regex(cfg.subreddits) if cfg.prefilter else None
        self.subreddits = {s.lower() for s in cfg.subreddits}
        self.start = _epoch(cfg.start_date)
        self.end = _epoch(cfg.end_date)
        self.now = time.time()


def _prepare(obj: dict) -> None:
    """Arctic Shift re-reads items ~36 h after creation and records when in `_meta`; that read is the score."""
    meta = obj.get("_meta")
    if isinstance(meta, dict) and meta.get("retrieved_2nd_on"):
        obj["retrieved_on"] = meta["retrieved_2nd_on"]


def _ingest_file(
    path: Path,
    kind: Kind,
    flt: _Filter,
    writer: ShardWriter,
    post_ids: set[str],
    progress: bool,
) -> IngestStats:
    """Steps 2-3 for one file; adds kept post ids to `post_ids` (posts) or reads it (comments)."""
    cfg = flt.cfg
    stats = IngestStats(files=1, bytes_read=path.stat().st_size)
    subs, start, end = flt.subreddits, flt.start, flt.end
    min_score = cfg.min_post_score if kind == "posts" else cfg.min_comment_score
    convert = post_from_json if kind == "posts" else comment_from_json
    t0 = time.perf_counter()
    # 2a. prefilter on the raw bytes (inside iter_candidates): most of a dump is other subreddits
    for skipped, line in iter_candidates(path, flt.regex, progress=progress):
        if skipped:
            stats.lines_read += skipped
            stats.drop("prefiltered", skipped)
        if line is None:
            continue
        stats.lines_read += 1
        if not line.strip():
            stats.drop("empty")
            continue
        # 2b. parse and check the subreddit exactly
        try:
            obj = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            stats.drop("malformed")
            continue
        if not isinstance(obj, dict):
            stats.drop("malformed")
            continue
        if subs and str(obj.get("subreddit", "")).lower() not in subs:
            stats.drop("subreddit")
            continue
        if kind == "comments":
            link = str(obj.get("link_id") or "")
            if link.split("_", 1)[-1] not in post_ids:
                stats.drop("orphan_comment")  # its post was not kept (or not in the submission files)
                continue
            if cfg.top_level_only and not str(obj.get("parent_id") or "").startswith("t3_"):
                stats.drop("not_top_level")
                continue
        # 2c. shared converter (absorbs type drift) and filters
        _prepare(obj)
        try:
            row = convert(obj, retrieved_utc=flt.now, salt=cfg.salt, source="dump")
        except DeletedContent:
            stats.drop("deleted")
            continue
        except (MalformedRecord, ValueError, TypeError, OverflowError):
            stats.drop("malformed")
            continue
        if kind == "posts" and (
            (start is not None and row["created_utc"] < start) or (end is not None and row["created_utc"] >= end)
        ):
            stats.drop("date")
            continue
        if min_score is not None and row["score"] < min_score:
            stats.drop("score")
            continue
        # 3. keep
        writer.add(row)
        if kind == "posts":
            post_ids.add(row["id"])
            stats.posts_kept += 1
        else:
            stats.comments_kept += 1
    writer.flush()
    stats.seconds = time.perf_counter() - t0
    return stats


# ---------------------------------------------------------------------------------------------- state


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"


def _read_state(out: Path) -> dict:
    path = out / STATE_FILE
    if not path.exists():
        return {"done": {}}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: corrupt ingest state ({err}); delete it and the shards to start over") from None


def _write_state(out: Path, state: dict) -> None:
    path = out / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _committed_shards(state: dict) -> set[str]:
    return {name for entry in state["done"].values() for name in entry["shards"]}


def _clean_partial(out: Path, state: dict) -> int:
    """Step 4: delete shards not recorded as belonging to a finished file (left by an interrupted run)."""
    committed = _committed_shards(state)
    removed = 0
    for kind in ("posts", "comments"):
        for path in shard_paths(out, kind):
            if f"{kind}/{path.name}" not in committed:
                path.unlink()
                removed += 1
    return removed


def _kept_post_ids(out: Path) -> set[str]:
    """Ids of posts already written (for joining comments after a resumed run)."""
    ids: set[str] = set()
    for path in shard_paths(out, "posts"):
        ids.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids


# ---------------------------------------------------------------------------------------------- public


def ingest_dumps(cfg: DumpConfig, out_dir: str | Path) -> IngestStats:
    """Read the dump files of `cfg` into the records directory `out_dir`; returns counts (summed over files,
    including those of files done by an earlier run and skipped now, which also count in `files_skipped`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_exists = (out / STATE_FILE).exists()
    if not state_exists and (shard_paths(out, "posts") or shard_paths(out, "comments")):
        raise FileExistsError(
            f"{out} already holds record shards not written by a dump ingest (no {STATE_FILE}); "
            "ingest into an empty directory"
        )
    state = _read_state(out)
    if not cfg.resume:
        state["done"] = {}  # start over: every existing shard is deleted below
    _clean_partial(out, state)
    _write_state(out, state)

    # 1. submissions first, then comments
    files = [(p, file_kind(p) or sniff_kind(p)) for p in expand_paths(cfg.paths)]
    files.sort(key=lambda pk: (pk[1] != "posts", str(pk[0])))
    flt = _Filter(cfg)
    post_ids = _kept_post_ids(out)
    total = IngestStats()
    for path, kind in files:
        key = _file_key(path)
        if key in state["done"]:
            total.add(IngestStats(**state["done"][key]["stats"]))
            total.files_skipped += 1
            continue
        before = set(shard_paths(out, kind))
        writer = ShardWriter(out, kind, rows_per_shard=cfg.rows_per_shard)
        stats = _ingest_file(path, kind, flt, writer, post_ids, cfg.progress)
        shards = [f"{kind}/{p.name}" for p in shard_paths(out, kind) if p not in before]
        state["done"][key] = {"kind": kind, "stats": asdict(stats), "shards": shards}
        _write_state(out, state)
        total.add(stats)
    return total
