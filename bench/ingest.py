"""Dump ingest at dump scale: our reader beside the zstd floor, the previous reader, and DuckDB / polars.

    python bench/ingest.py --quick             # 80 MB of NDJSON, seconds (what `make bench` runs)
    python bench/ingest.py --repeat 2          # 16 GB of NDJSON, a 2.7 GB .zst: ~7 min to generate once
                                               # (19 GB under /tmp), then ~4 min per round on 2 busy cores
    python bench/ingest.py --rs RS_2023-01.zst --rc RC_2023-01.zst --subreddits tifu \
        --start 2023-01-01 --end 2023-01-16    # real files (peers then need --ndjson-dir with them unpacked)

The job is the product's: keep the submissions of some subreddits created in a date range, then the
top-level comments of those posts, and write them as Parquet shards. The generated month looks like
Pushshift's: comment lines of ~600-900 bytes with ~27 fields, submissions of ~1.5 KB, 300 subreddits of
which the 2 kept hold ~3% of the lines, half of their posts outside the dates, type drift (`created_utc`
as int, float or string), deleted authors and some malformed lines; zstd with a 256 MiB window (too large
for zstandard's default decoder, like the real dumps). It is generated once into a cache directory, with a
decompressed copy of each file for the peers.

Rows, all over the same lines (lines/s = lines of both files / seconds):
- zstd decompress only: one thread, no line handling: the physical floor of any reader of the `.zst`.
- ours: `ingest_dumps` on the `.zst` files (decompression, filters, conversion, Parquet shards).
  The CPU column is the process's CPU time (all threads): under load it says more than the wall time.
- previous reader: the same call on the dump reader of `--before` (loaded from git), when available.
- DuckDB `read_json` / polars `scan_ndjson` on the DECOMPRESSED files (they skip decompression), same
  filters and join, the kept columns written to Parquet. They keep the same rows on the generated data
  but not the product's conversion (author hashing, drift rules, drop counts, resumable state).
  Optional: `pip install duckdb polars` (a row says when one is missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, not an installed copy

import numpy as np
import zstandard

from data.sources.dumps import ZSTD_WINDOW, DumpConfig, ingest_dumps

KEPT = ["tifu", "relationships"]
OTHERS = [f"sub{i:03d}" for i in range(298)]
MONTH_START = int(dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc).timestamp())
MONTH_SECONDS = 31 * 86400
BEFORE = "9f0cd51"  # the last commit with the single-threaded, json.loads dump reader


# ---------------------------------------------------------------------------------------------- data


class _Text:
    """Words with a Zipf-like frequency, so text compresses like text (not like a repeated pool)."""

    def __init__(self, rng: np.random.Generator, vocab: int = 30_000) -> None:
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        lengths = rng.integers(1, 11, vocab)
        self.vocab = np.array(["".join(rng.choice(letters, n)) for n in lengths], dtype=object)
        p = 1.0 / np.arange(1, vocab + 1)
        self.p = p / p.sum()
        self.rng = rng

    def many(self, n: int, mean_words: float) -> list[str]:
        counts = np.maximum(1, self.rng.lognormal(np.log(mean_words), 0.7, n).astype(int))
        words = self.vocab[self.rng.choice(len(self.vocab), int(counts.sum()), p=self.p)].tolist()
        out, at = [], 0
        for k in counts.tolist():
            out.append(" ".join(words[at : at + k]))
            at += k
        return out


def _created(rng: np.random.Generator, n: int) -> list[str]:
    """created_utc as Pushshift wrote it over the years: mostly int, some float, some string."""
    t = MONTH_START + rng.integers(0, MONTH_SECONDS, n)
    kind = rng.random(n)
    return [f'"{v}"' if k < 0.01 else (f"{v}.0" if k < 0.02 else str(v)) for v, k in zip(t.tolist(), kind.tolist())]


def _post_line(pid: str, sub: str, title: str, text: str, author: str, created: str, score: int) -> str:
    return (
        f'{{"archived":false,"author":"{author}","author_flair_text":null,"author_fullname":"t2_{pid}a",'
        f'"can_gild":true,"contest_mode":false,"created_utc":{created},"distinguished":null,"domain":"self.{sub}",'
        f'"edited":false,"gilded":0,"gildings":{{}},"id":"{pid}","is_self":true,"is_video":false,'
        f'"link_flair_text":null,"locked":false,"media":null,"num_comments":12,"over_18":false,'
        f'"permalink":"/r/{sub}/comments/{pid}/x/","retrieved_on":1675000000,"score":{score},"selftext":"{text}",'
        f'"spoiler":false,"stickied":false,"subreddit":"{sub}","subreddit_id":"t5_{sub}","subreddit_type":"public",'
        f'"thumbnail":"self","title":"{title}","upvote_ratio":0.97,"url":"https://www.reddit.com/r/{sub}/'
        f'comments/{pid}/x/"}}'
    )


def _comment_line(cid: str, pid: str, sub: str, body: str, author: str, created: str, score: int) -> str:
    return (
        f'{{"archived":false,"author":"{author}","author_flair_css_class":null,"author_flair_text":null,'
        f'"author_fullname":"t2_{cid}","body":"{body}","can_gild":true,"collapsed":false,"controversiality":0,'
        f'"created_utc":{created},"distinguished":null,"edited":false,"gilded":0,"id":"{cid}",'
        f'"is_submitter":false,"link_id":"t3_{pid}","locked":false,"parent_id":"t3_{pid}",'
        f'"permalink":"/r/{sub}/comments/{pid}/x/{cid}/","retrieved_on":1675000000,"score":{score},'
        f'"score_hidden":false,"send_replies":true,"stickied":false,"subreddit":"{sub}","subreddit_id":"t5_{sub}",'
        f'"subreddit_type":"public"}}'
    )


def _author(rng: np.random.Generator, n: int) -> list[str]:
    deleted = rng.random(n) < 0.02
    return ["[deleted]" if d else f"user{u}" for d, u in zip(deleted.tolist(), rng.integers(0, 10**7, n).tolist())]


def _broken(rng: np.random.Generator, lines: list[str]) -> None:
    """~0.1% of lines cut short, as a crashed writer leaves them (they still name their subreddit)."""
    for i in np.flatnonzero(rng.random(len(lines)) < 0.001).tolist():
        lines[i] = lines[i][: len(lines[i]) // 2]


def generate(directory: Path, comments_bytes: float, seed: int = 0) -> list[Path]:
    """RS_/RC_2023-01 `.zst` files and their decompressed `.ndjson` copies; comments fill `comments_bytes`."""
    rng = np.random.default_rng(seed)
    text = _Text(rng)
    subs = np.array(KEPT + OTHERS, dtype=object)
    p_sub = np.array([0.02, 0.01] + [0.97 / len(OTHERS)] * len(OTHERS))
    n_comments = int(comments_bytes / 780)
    n_posts = max(1000, n_comments // 8)
    post_ids = [f"p{i:07x}" for i in range(n_posts)]
    post_sub = subs[rng.choice(len(subs), n_posts, p=p_sub)].tolist()
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=28, threads=2)
    batch = 50_000
    out = []
    for name, n in (("RS_2023-01", n_posts), ("RC_2023-01", n_comments)):
        zst, plain = directory / f"{name}.zst", directory / f"{name}.ndjson"
        with open(zst, "wb") as fz, open(plain, "wb") as fp, \
                zstandard.ZstdCompressor(compression_params=params).stream_writer(fz) as writer:
            for lo in range(0, n, batch):
                m = min(batch, n - lo)
                created, authors = _created(rng, m), _author(rng, m)
                scores = rng.integers(-5, 300, m).tolist()
                if name.startswith("RS"):
                    titles, bodies = text.many(m, 10), text.many(m, 80)
                    lines = [_post_line(post_ids[lo + i], post_sub[lo + i], titles[i], bodies[i], authors[i],
                                        created[i], scores[i]) for i in range(m)]
                else:
                    parents = rng.integers(0, n_posts, m).tolist()
                    bodies = text.many(m, 22)
                    lines = [_comment_line(f"c{lo + i:08x}", post_ids[j], post_sub[j], bodies[i], authors[i],
                                           created[i], scores[i]) for i, j in enumerate(parents)]
                _broken(rng, lines)
                data = ("\n".join(lines) + "\n").encode()
                writer.write(data)
                fp.write(data)
        out += [zst, plain]
    return out


def cached_data(cache: Path, comments_bytes: float, seed: int) -> list[Path]:
    """Generate once per size and seed; a finished directory has a `done` marker."""
    directory = cache / f"rc{comments_bytes / 1e6:.0f}MB-seed{seed}"
    if not (directory / "done").exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        t0 = time.perf_counter()
        print(f"generating {comments_bytes / 1e9:.2f} GB of comments into {directory} ...", flush=True)
        generate(directory, comments_bytes, seed)
        (directory / "done").write_text("")
        print(f"  generated in {time.perf_counter() - t0:.0f} s", flush=True)
    return [directory / f"{n}.{ext}" for n in ("RS_2023-01", "RC_2023-01") for ext in ("zst", "ndjson")]


# ---------------------------------------------------------------------------------------------- readers


def timed(fn, *args) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, all its threads included, result)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0, result


def decompress_only(paths: list[Path]) -> dict:
    """zstd alone, one thread, newlines counted by numpy: the floor of any reader of the `.zst` files."""
    lines = size = 0
    for path in paths:
        with open(path, "rb") as f:
            reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW).stream_reader(f, read_size=1 << 20)
            while chunk := reader.read(1 << 24):
                size += len(chunk)
                lines += int(np.count_nonzero(np.frombuffer(chunk, np.uint8) == 10))
    return {"lines": lines, "bytes": size}


def _dump_config(module, paths: list[Path], args: argparse.Namespace):
    return module.DumpConfig(paths=[str(p) for p in paths], subreddits=args.subreddits, start_date=args.start,
                             end_date=args.end, min_post_score=0, min_comment_score=0, progress=False)


def run_ours(module, paths: list[Path], args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(dir=args.tmp) as out:
        return module.ingest_dumps(_dump_config(module, paths, args), out).to_dict()


def previous_reader(rev: str):
    """The dump module as it was at `rev` (its other imports resolve to this checkout), or None."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:data/sources/dumps.py"],
                                capture_output=True, check=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / f"dumps_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _sql_list(names: list[str]) -> str:
    return ", ".join(f"'{n.lower()}'" for n in names)


DELETED = ("[deleted]", "[removed]", "[deleted by user]", "[removed by reddit]")


def run_duckdb(rs: Path, rc: Path, args: argparse.Namespace) -> dict:
    import duckdb

    start, end = _epochs(args)
    deleted = _sql_list(list(DELETED))
    with tempfile.TemporaryDirectory(dir=args.tmp) as out:
        con = duckdb.connect()
        con.execute(f"SET threads={os.cpu_count()}")
        opts = "format='newline_delimited', ignore_errors=true, maximum_object_size=16777216"
        con.execute(f"""
            CREATE TEMP TABLE posts AS SELECT id, subreddit, title, selftext, author, created_utc, score
            FROM read_json('{rs}', {opts}, columns={{id: 'VARCHAR', subreddit: 'VARCHAR', title: 'VARCHAR',
                 selftext: 'VARCHAR', author: 'VARCHAR', created_utc: 'DOUBLE', score: 'BIGINT'}})
            WHERE lower(subreddit) IN ({_sql_list(args.subreddits)}) AND created_utc >= {start}
              AND created_utc < {end} AND score >= 0 AND author <> '[deleted]' AND selftext NOT IN ({deleted})
              AND title IS NOT NULL""")
        con.execute(f"COPY posts TO '{out}/posts.parquet' (FORMAT parquet)")
        con.execute(f"""
            COPY (SELECT id, link_id, parent_id, subreddit, body, author, created_utc, score
            FROM read_json('{rc}', {opts}, columns={{id: 'VARCHAR', link_id: 'VARCHAR', parent_id: 'VARCHAR',
                 subreddit: 'VARCHAR', body: 'VARCHAR', author: 'VARCHAR', created_utc: 'DOUBLE', score: 'BIGINT'}})
            WHERE lower(subreddit) IN ({_sql_list(args.subreddits)}) AND parent_id LIKE 't3_%'
              AND substr(link_id, 4) IN (SELECT id FROM posts) AND score >= 0 AND author <> '[deleted]'
              AND body NOT IN ({deleted})) TO '{out}/comments.parquet' (FORMAT parquet)""")
        posts = con.execute(f"SELECT count(*) FROM '{out}/posts.parquet'").fetchone()[0]
        comments = con.execute(f"SELECT count(*) FROM '{out}/comments.parquet'").fetchone()[0]
        con.close()
    return {"posts_kept": posts, "comments_kept": comments}


def run_polars(rs: Path, rc: Path, args: argparse.Namespace) -> dict:
    import polars as pl

    start, end = _epochs(args)
    subs = [s.lower() for s in args.subreddits]
    with tempfile.TemporaryDirectory(dir=args.tmp) as out:
        post_schema = {"id": pl.String, "subreddit": pl.String, "title": pl.String, "selftext": pl.String,
                       "author": pl.String, "created_utc": pl.Float64, "score": pl.Int64}
        posts = (pl.scan_ndjson(rs, schema=post_schema, ignore_errors=True)
                 .filter(pl.col("subreddit").str.to_lowercase().is_in(subs)
                         & (pl.col("created_utc") >= start) & (pl.col("created_utc") < end)
                         & (pl.col("score") >= 0) & (pl.col("author") != "[deleted]")
                         & ~pl.col("selftext").is_in(list(DELETED)) & pl.col("title").is_not_null())
                 .collect())
        posts.write_parquet(f"{out}/posts.parquet")
        comment_schema = {"id": pl.String, "link_id": pl.String, "parent_id": pl.String, "subreddit": pl.String,
                          "body": pl.String, "author": pl.String, "created_utc": pl.Float64, "score": pl.Int64}
        comments = (pl.scan_ndjson(rc, schema=comment_schema, ignore_errors=True)
                    .filter(pl.col("subreddit").str.to_lowercase().is_in(subs)
                            & pl.col("parent_id").str.starts_with("t3_")
                            & pl.col("link_id").str.slice(3).is_in(posts["id"].implode())
                            & (pl.col("score") >= 0) & (pl.col("author") != "[deleted]")
                            & ~pl.col("body").is_in(list(DELETED)))
                    .collect())
        comments.write_parquet(f"{out}/comments.parquet")
    return {"posts_kept": len(posts), "comments_kept": len(comments)}


def _epochs(args: argparse.Namespace) -> tuple[float, float]:
    def epoch(day: dt.date) -> float:
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()

    return epoch(args.start), epoch(args.end)


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="60 MB of comments (the default size is --gb)")
    ap.add_argument("--gb", type=float, default=13.0,
                    help="GB of generated comment NDJSON (~6.5x smaller as .zst: the default makes a 2 GB .zst)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "upvote-rlhf-bench" / "ingest",
                    help="where generated dumps are kept between runs")
    ap.add_argument("--tmp", type=Path, default=None, help="where outputs are written (default: system temp)")
    ap.add_argument("--rs", type=Path, help="a submissions dump to read instead of generated data")
    ap.add_argument("--rc", type=Path, help="a comments dump to read instead of generated data")
    ap.add_argument("--ndjson-dir", type=Path, help="decompressed copies of --rs/--rc (same stem, .ndjson) for peers")
    ap.add_argument("--subreddits", nargs="+", default=KEPT)
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 1, 1))
    ap.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2023, 1, 16))
    ap.add_argument("--before", default=BEFORE, help="git revision of the previous reader ('' skips it)")
    ap.add_argument("--peers", nargs="*", default=["duckdb", "polars"], choices=["duckdb", "polars"])
    ap.add_argument("--repeat", type=int, default=1, help="measure every reader this many times (rows per round)")
    args = ap.parse_args(argv)

    if args.rs and args.rc:
        zst = [args.rs, args.rc]
        plain = [args.ndjson_dir / f"{p.name.removesuffix('.zst')}.ndjson" for p in zst] if args.ndjson_dir else None
    else:
        rs, rs_plain, rc, rc_plain = cached_data(args.cache, 60e6 if args.quick else args.gb * 1e9, args.seed)
        zst, plain = [rs, rc], [rs_plain, rc_plain]
    before = previous_reader(args.before) if args.before else None
    ours = sys.modules["data.sources.dumps"]

    readers = [("zstd decompress only (1 thread)", decompress_only, (zst,)),
               ("ours: ingest_dumps (.zst)", run_ours, (ours, zst, args))]
    if before is not None:
        readers.append((f"previous reader ({args.before}, .zst)", run_ours, (before, zst, args)))
    for peer, fn in (("duckdb", run_duckdb), ("polars", run_polars)):
        if peer in args.peers and plain and all(p.exists() for p in plain):
            name = {"duckdb": "duckdb read_json", "polars": "polars scan_ndjson"}[peer] + " (.ndjson)"
            readers.append((name, fn, (plain[0], plain[1], args)))

    if args.quick:  # a sub-second run would otherwise time first-touch costs (page cache, lazy imports)
        for _, fn, fn_args in readers[:2]:
            fn(*fn_args)
    for round_ in range(1, args.repeat + 1):
        rows, notes = [], []
        for name, fn, fn_args in readers:
            try:
                rows.append((name, *timed(fn, *fn_args)))
            except ImportError as err:
                notes.append(f"{name}: not installed ({err.name}); `pip install duckdb polars` adds the peers")
            except Exception as err:  # a peer that cannot read the file is a result too
                notes.append(f"{name} FAILED: {type(err).__name__}: {str(err).splitlines()[0]}")
        floor, stats = rows[0][3], rows[1][3]
        lines, size, t_ours = floor["lines"], floor["bytes"], rows[1][1]
        print(f"\n== round {round_} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs): {lines:,} "
              f"lines, {size / 1e9:.2f} GB NDJSON, {sum(p.stat().st_size for p in zst) / 1e9:.2f} GB .zst; "
              f"subreddits {args.subreddits}, posts created in [{args.start}, {args.end}); ours kept "
              f"{stats['posts_kept']:,} posts, {stats['comments_kept']:,} comments; dropped {stats['dropped']}")
        print(f"{'reader':40s} {'lines/s':>10s} {'MB/s':>6s} {'seconds':>8s} {'CPU s':>7s} {'vs ours':>8s} "
              f"{'kept posts/comments':>20s}")
        for name, seconds, cpu, result in rows:
            kept = f"{result['posts_kept']:,}/{result['comments_kept']:,}" if "posts_kept" in result else ""
            print(f"{name:40s} {lines / seconds:10,.0f} {size / 1e6 / seconds:6.0f} {seconds:8.2f} {cpu:7.2f} "
                  f"{seconds / t_ours:7.2f}x {kept:>20s}")
        for note in notes:
            print(note)
        print("(vs ours: this reader's seconds / ours; above 1 means ours is faster)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
