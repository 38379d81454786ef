"""Pushshift / Arctic-Shift monthly dumps -> a records directory (posts/, comments/ Parquet shards).

    python -c "from data.sources.dumps import DumpConfig, ingest_dumps; \
        print(ingest_dumps(DumpConfig(paths=['dumps/RS_2023-01.zst', 'dumps/RC_2023-01.zst'], \
        subreddits=['tifu']), 'runs/demo/records'))"

The files are zstd-compressed NDJSON (one submission or comment per line) written with a 2 GiB window,
so the decompressor needs `max_window_size=2**31`. A month of comments is ~30 GB of text: the file is
STREAMED in compressed chunks and never held in memory (reading, frame checks and the raw-bytes prefilter
are in `data.sources.dump_reader`).

Steps per run:
1. Order the files: submissions (RS_*) before comments (RC_*), because a comment is kept only when its
   post was kept (joined on `link_id`). Comments arrive for days after their post: include the next
   month's RC file too, or late-month posts lose their later comments. A directory stands for the dump
   files in it.
2. For each line: a regex on the raw bytes drops lines of other subreddits before any JSON parsing
   (most of a dump), then the JSON parser, the shared converters of `data.records`, and the date/score
   filters.
3. Rows go to `ShardWriter`s; at the end of each file the writers are flushed and the file is recorded as
   done in `ingest_state.json` (written atomically) with the shards it produced.
4. A rerun skips files already done; shards of a file that was interrupted part-way are deleted, so the
   output is resumed, never mixed. A file that changed since it was recorded (size or time) is read again
   and its old shards are dropped.

Real dumps drift (see `data.records`): malformed lines (bad JSON, non-objects, missing fields) and deleted
content are counted by reason and skipped, never fatal. A damaged file is fatal, but only to itself: when
a `.zst` file is truncated or corrupt (`DumpReadError`), the rows read from it before the fault are removed
and it is not recorded as done; the other files are still read (comment files only when every submission
file was read whole, since their join needs all posts), and the run then ends with `DumpFilesDamaged`
naming each damaged file, where it failed and what was kept. Rerun after replacing the file: the finished
files are skipped. With `allow_truncated: true` the rows before the fault are kept instead, the file is
recorded as done with the fault, a warning is logged and the counts say how many files were cut short.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import orjson
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from data.records import DeletedContent, MalformedRecord, comment_from_json, post_from_json
from data.shards import ShardWriter, shard_paths
from data.sources.dump_reader import ZSTD_WINDOW, DumpReadError, iter_candidates, iter_lines

__all__ = [
    "DumpConfig", "DumpFilesDamaged", "DumpReadError", "IngestStats", "ZSTD_WINDOW", "expand_paths",
    "file_kind", "ingest_dumps", "iter_candidates", "iter_lines", "sniff_kind",
]

log = logging.getLogger(__name__)

STATE_FILE = "ingest_state.json"
DUMP_SUFFIXES = (".zst", ".ndjson", ".jsonl")

Kind = Literal["posts", "comments"]


class DumpConfig(BaseModel):
    """What to read from the dump files and what to keep."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(
        ...,
        min_length=1,
        description="Dump files, directories or glob patterns (`RS_*.zst` submissions, `RC_*.zst` comments; "
        "`.ndjson`/`.jsonl` plain text also read). A directory stands for the `*.zst`, `*.ndjson` and `*.jsonl` "
        "files in it. Files whose name says neither RS/RC nor submissions/comments are sniffed.",
    )
    subreddits: list[str] = Field(
        default_factory=list,
        description="Subreddits to keep (case-insensitive, without `r/`; a list or one comma-separated string); "
        "empty keeps every subreddit.",
    )
    start_date: dt.date | None = Field(None, description="Keep posts created on or after this UTC date (YYYY-MM-DD).")
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
    allow_truncated: bool = Field(
        False,
        description="Keep the rows read from a truncated or corrupt `.zst` file before its fault (logged, counted "
        "in `files_truncated`, and the file recorded as done); by default such a file is an error and none of "
        "its rows are kept.",
    )
    resume: bool = Field(True, description="Skip files recorded as fully ingested in `ingest_state.json`.")
    progress: bool = Field(True, description="Show a tqdm bar per file (compressed bytes).")

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: object) -> object:
        # `scrape.dumps.paths=/data/dumps` on the command line arrives as one string, not a list
        return [value] if isinstance(value, str) else value

    @field_validator("subreddits", mode="before")
    @classmethod
    def _comma_separated_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(",") if part.strip()]
        return value

    @field_validator("paths")
    @classmethod
    def _no_empty_paths(cls, value: list[str]) -> list[str]:
        if any(not p.strip() for p in value):
            raise ValueError("an empty path; give dump files, directories or glob patterns")
        return value

    @field_validator("subreddits")
    @classmethod
    def _clean_subreddits(cls, value: list[str]) -> list[str]:
        out = []
        for name in value:
            name = name.strip().removeprefix("/").removeprefix("r/")
            if not re.fullmatch(r"[A-Za-z0-9_]{2,21}", name):
                raise ValueError(f"{name!r} is not a subreddit name (letters, digits, _; 2-21 chars)")
            out.append(name)
        return out

    @field_validator("end_date")
    @classmethod
    def _after_start(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("start_date")
        if value and start and start >= value:
            raise ValueError(f"{value} is not after start_date {start} (end_date is exclusive)")
        return value


@dataclass
class IngestStats:
    """Counts for one ingest (summed over files); `dropped` is keyed by reason.

    `files_truncated` counts files read only up to a fault (kept under `allow_truncated`); `truncated` says
    for each where it failed.
    """

    files: int = 0
    files_skipped: int = 0
    files_truncated: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    posts_kept: int = 0
    comments_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def add(self, other: "IngestStats") -> None:
        for name in ("files", "files_skipped", "files_truncated", "bytes_read", "lines_read", "posts_kept",
                     "comments_kept"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds
        self.truncated.extend(other.truncated)
        for reason, n in other.dropped.items():
            self.drop(reason, n)

    @property
    def kept(self) -> int:
        return self.posts_kept + self.comments_kept

    def to_dict(self) -> dict:
        return asdict(self) | {"kept": self.kept}


class DumpFilesDamaged(RuntimeError):
    """One or more dump files could not be read to their end; the message says what was kept and what to do."""

    def __init__(self, message: str, faults: list[DumpReadError]) -> None:
        super().__init__(message)
        self.faults = faults


# ---------------------------------------------------------------------------------------------- files


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


def _dump_order(path: Path) -> tuple[int, str]:
    """Submissions, then files to sniff, then comments; by name within each."""
    return {"posts": 0, None: 1, "comments": 2}[file_kind(path)], path.name


class DumpPathNotFound(FileNotFoundError):
    """A configured dump path names no dump file (the message says which, as scrape.dumps.paths)."""


def _dump_files_in(directory: Path) -> list[Path]:
    files = [p for p in directory.iterdir() if p.is_file() and p.name.lower().endswith(DUMP_SUFFIXES)]
    if not files:
        raise DumpPathNotFound(
            f"scrape.dumps.paths: directory {str(directory)!r} holds no dump files "
            f"({', '.join('*' + s for s in DUMP_SUFFIXES)})"
        )
    return sorted(files, key=_dump_order)


def expand_paths(patterns: list[str]) -> list[Path]:
    """Files, directories and globs -> existing files (deduplicated; a directory's files sorted RS before RC).

    A pattern matching nothing, or a directory holding no dump file, is an error naming it.
    """
    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        files: list[Path] = []
        for match in map(Path, matches):
            if match.is_dir():
                files.extend(_dump_files_in(match))
            elif match.is_file():
                files.append(match)
        if not files:
            raise DumpPathNotFound(f"scrape.dumps.paths: {pattern!r} matches no file (relative paths start at "
                                   f"{os.getcwd()})")
        out.extend(f for f in files if f not in out)
    return out


# ---------------------------------------------------------------------------------------------- one file


def _subreddit_regex(subreddits: list[str]) -> re.Pattern[bytes] | None:
    if not subreddits:
        return None
    names = b"|".join(re.escape(s.encode()) for s in subreddits)
    # Matches `"subreddit":"tifu"` with any JSON spacing within a line (no newline: a match never spans two
    # lines); names are ASCII [A-Za-z0-9_], so no escapes. Case-insensitive only around the names, so
    # `"subreddit"` stays a literal the engine can skip to.
    return re.compile(rb'"subreddit"[ \t\r]*:[ \t\r]*"(?i:' + names + rb')"')


def _epoch(day: dt.date | None) -> float | None:
    return None if day is None else dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()


class _Filter:
    """The per-line decisions, precomputed from the config."""

    def __init__(self, cfg: DumpConfig) -> None:
        self.cfg = cfg
        self.regex = _subreddit_regex(cfg.subreddits) if cfg.prefilter else None
        self.subreddits = {s.lower() for s in cfg.subreddits}
        self.start = _epoch(cfg.start_date)
        self.end = _epoch(cfg.end_date)
        self.now = time.time()


def _parse(line: bytes) -> object:
    """orjson (~4x faster); what it refuses but `json` reads (NaN, integers over 64 bits, lone surrogates)
    goes through `json`, so the rows kept are those `json.loads` would give. Raises ValueError."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            return json.loads(line)
        except RecursionError:  # nesting deeper than Python's stack: not a Reddit object either
            raise ValueError("nested too deep") from None


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
    """Steps 2-3 for one file; adds kept post ids to `post_ids` (posts) or reads it (comments).

    Raises `DumpReadError` (with the file's counts so far in `err.stats`) when the file is damaged; the rows
    read before it are then still in `writer` (flushed or not): the caller decides their fate.
    """
    cfg = flt.cfg
    stats = IngestStats(files=1, bytes_read=path.stat().st_size)
    subs, start, end = flt.subreddits, flt.start, flt.end
    min_score = cfg.min_post_score if kind == "posts" else cfg.min_comment_score
    convert = post_from_json if kind == "posts" else comment_from_json
    t0 = time.perf_counter()
    try:
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
                obj = _parse(line)
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
    except DumpReadError as err:
        stats.seconds = time.perf_counter() - t0
        err.stats = stats  # type: ignore[attr-defined]
        raise
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


def _forget_changed(out: Path, state: dict, files: list[Path]) -> list[str]:
    """Step 4: a file recorded as done that has changed since (re-downloaded, repaired) is read again:
    drop its old entry and shards so its rows are not stored twice. Returns the forgotten file names."""
    current = {_file_key(p) for p in files}
    by_path = {str(p.resolve()) for p in files}
    forgotten = []
    for key in list(state["done"]):
        if key not in current and key.rsplit("|", 2)[0] in by_path:
            for name in state["done"].pop(key)["shards"]:
                (out / name).unlink(missing_ok=True)
            forgotten.append(Path(key.rsplit("|", 2)[0]).name)
    return forgotten


def _kept_post_ids(out: Path) -> set[str]:
    """Ids of posts already written (for joining comments after a resumed run)."""
    ids: set[str] = set()
    for path in shard_paths(out, "posts"):
        ids.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids


def _damage_report(out: Path, faults: list[DumpReadError], not_read: list[Path], total: IngestStats) -> str:
    """The message of `DumpFilesDamaged`: each fault, what was kept, and how to go on."""
    lines = [f"{len(faults)} dump file(s) could not be read to the end:"]
    for err in faults:
        lines.append(f"  - {err} (none of its rows were kept; the file is not recorded as done)")
    if not_read:
        lines.append(
            "  Not read (comments need every submission file whole): " + ", ".join(p.name for p in not_read)
        )
    lines.append(
        f"Kept in {out}: {total.posts_kept:,} posts and {total.comments_kept:,} comments from "
        f"{total.files:,} file(s) read whole, recorded in {STATE_FILE}."
    )
    lines.append(
        "Replace the damaged file(s) (`zstd -t FILE` checks one) and rerun: finished files are skipped. "
        "To keep the rows before a fault instead, set `allow_truncated: true` in the dumps config "
        "(scrape.dumps.allow_truncated=true)."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- public


def ingest_dumps(cfg: DumpConfig, out_dir: str | Path) -> IngestStats:
    """Read the dump files of `cfg` into the records directory `out_dir`; returns counts (summed over files,
    including those of files done by an earlier run and skipped now, which also count in `files_skipped`).

    Raises `DumpFilesDamaged` after reading every other file when a file is truncated or corrupt (unless
    `cfg.allow_truncated`), and `FileNotFoundError` naming a path that matches no dump file.
    """
    out = Path(out_dir)
    files = [(p, file_kind(p) or sniff_kind(p)) for p in expand_paths(cfg.paths)]
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
    for name in _forget_changed(out, state, [p for p, _ in files]):
        log.info("%s changed since it was ingested: reading it again", name)
    _clean_partial(out, state)
    _write_state(out, state)

    # 1. submissions first, then comments
    files.sort(key=lambda pk: (pk[1] != "posts", str(pk[0])))
    flt = _Filter(cfg)
    post_ids = _kept_post_ids(out)
    total = IngestStats()
    faults: list[DumpReadError] = []
    posts_damaged = False
    not_read: list[Path] = []
    for path, kind in files:
        key = _file_key(path)
        if key in state["done"]:
            total.add(IngestStats(**state["done"][key]["stats"]))
            total.files_skipped += 1
            continue
        if kind == "comments" and posts_damaged:
            not_read.append(path)  # joined against an incomplete set of posts, it would lose comments
            continue
        before = set(shard_paths(out, kind))
        writer = ShardWriter(out, kind, rows_per_shard=cfg.rows_per_shard)
        try:
            stats = _ingest_file(path, kind, flt, writer, post_ids, cfg.progress)
        except DumpReadError as err:
            if not cfg.allow_truncated:
                for shard in set(shard_paths(out, kind)) - before:
                    shard.unlink()  # the rows before the fault are not mixed in with whole files
                faults.append(err)
                posts_damaged |= kind == "posts"
                continue
            writer.flush()
            stats = err.stats  # type: ignore[attr-defined]
            stats.files_truncated = 1
            stats.truncated = [{"file": str(path)} | err.to_dict()]
            log.warning("%s; kept the %s rows read before the fault (allow_truncated)", err, f"{stats.kept:,}")
        shards = [f"{kind}/{p.name}" for p in shard_paths(out, kind) if p not in before]
        state["done"][key] = {"kind": kind, "stats": asdict(stats), "shards": shards}
        _write_state(out, state)
        total.add(stats)
    if faults:
        raise DumpFilesDamaged(_damage_report(out, faults, not_read, total), faults)
    return total
