"""Dump-reader throughput against the floor: plain zstd decompression + json.loads of the same file.

    python bench/ingest.py            # ~200k lines (100k submissions + 100k comments)
    python bench/ingest.py --quick    # ~30k lines
    python bench/ingest.py --rs RS_2023-01.zst --rc RC_2023-01.zst --subreddits tifu

The generated dump looks like a real month: ~60 fields per line (Pushshift pads every object with flair,
award and media fields), 30 subreddits of which 2 are kept (~7% of lines), some drift and malformed lines.
The baseline parses every line, as any reader without a prefilter must; ours writes Parquet shards too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import zstandard

from data.sources.dumps import ZSTD_WINDOW, DumpConfig, ingest_dumps, iter_lines

SUBREDDITS = ["tifu", "relationships"] + [f"sub{i:02d}" for i in range(28)]
PADDING = {
    **{f"author_flair_{k}": None for k in ("css_class", "text", "template_id", "text_color", "type", "richtext")},
    "all_awardings": [], "awarders": [], "gildings": {}, "treatment_tags": [], "media": None, "secure_media": None,
    "media_embed": {}, "secure_media_embed": {}, "link_flair_richtext": [], "link_flair_text": None,
    "thumbnail": "self", "whitelist_status": "all_ads", "wls": 6, "pwls": 6, "suggested_sort": None,
    "contest_mode": False, "is_self": True, "is_video": False, "locked": False, "spoiler": False, "archived": False,
    "send_replies": True, "no_follow": False, "can_gild": True, "is_crosspostable": True, "is_meta": False,
    "total_awards_received": 0, "subreddit_type": "public", "subreddit_subscribers": 123456,
    "author_premium": False, "author_patreon_flair": False, "retrieved_on": 1675000000,
}


def _text(rng: random.Random, words: int) -> str:
    vocab = ["the", "my", "girlfriend", "said", "today", "and", "I", "was", "not", "sure", "what", "to", "do"]
    return " ".join(rng.choice(vocab) for _ in range(words))


def generate(directory: Path, n_posts: int, n_comments: int, seed: int = 0) -> tuple[Path, Path]:
    """RS_/RC_ files written with a 2 GiB-window-capable frame (long-distance matching, like the dumps)."""
    rng = random.Random(seed)
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=28, enable_ldm=True)
    paths = []
    post_ids = [f"p{i:07x}" for i in range(n_posts)]
    post_sub = [rng.choice(SUBREDDITS) for _ in range(n_posts)]
    for name, n in (("RS_2023-01.zst", n_posts), ("RC_2023-01.zst", n_comments)):
        buf = io.BytesIO()
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(buf, closefd=False) as w:
            for i in range(n):
                if rng.random() < 0.002:
                    w.write(b'{"id": "broken", "subreddit": "tifu", "title": \n')
                    continue
                created = 1672531200 + rng.random() * 2678400
                created_field = rng.choice([created, int(created), str(int(created))])
                if name.startswith("RS"):
                    obj = {"id": post_ids[i], "subreddit": post_sub[i], "title": _text(rng, 12),
                           "selftext": _text(rng, 120), "author": f"user{rng.randrange(10**6)}",
                           "created_utc": created_field, "score": rng.randrange(-5, 500),
                           "upvote_ratio": round(rng.random(), 2), "num_comments": rng.randrange(50), **PADDING}
                else:
                    j = rng.randrange(n_posts)
                    obj = {"id": f"c{i:07x}", "link_id": f"t3_{post_ids[j]}", "parent_id": f"t3_{post_ids[j]}",
                           "subreddit": post_sub[j], "body": _text(rng, 40), "author": f"user{rng.randrange(10**6)}",
                           "created_utc": created_field, "score": rng.randrange(-5, 200), **PADDING}
                if rng.random() < 0.02:
                    obj["author"] = "[deleted]"
                w.write(json.dumps(obj).encode() + b"\n")
        path = directory / name
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths[0], paths[1]


def baseline(paths: list[Path]) -> tuple[int, float]:
    """Floor: decompress, split lines, json.loads each line; nothing else."""
    t0 = time.perf_counter()
    n = 0
    for path in paths:
        for line in iter_lines(path):
            try:
                json.loads(line)
            except ValueError:
                pass
            n += 1
    return n, time.perf_counter() - t0


def decompress_only(paths: list[Path]) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for path in paths:
        with open(path, "rb") as f:
            reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW).stream_reader(f)
            while chunk := reader.read(1 << 22):
                n += chunk.count(b"\n")
    return n, time.perf_counter() - t0


def ours(paths: list[Path], subreddits: list[str], prefilter: bool) -> tuple[int, float, dict]:
    with tempfile.TemporaryDirectory() as out:
        cfg = DumpConfig(paths=[str(p) for p in paths], subreddits=subreddits, prefilter=prefilter,
                         progress=False, min_post_score=0)
        t0 = time.perf_counter()
        stats = ingest_dumps(cfg, out)
        return stats.lines_read, time.perf_counter() - t0, stats.to_dict()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~30k lines instead of ~200k")
    ap.add_argument("--rs", type=Path, help="use this submissions dump instead of generating one")
    ap.add_argument("--rc", type=Path, help="use this comments dump instead of generating one")
    ap.add_argument("--subreddits", nargs="+", default=["tifu", "relationships"])
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.rs and args.rc:
            paths = [args.rs, args.rc]
        else:
            n = 15_000 if args.quick else 100_000
            paths = list(generate(Path(tmp), n, n))
        size = sum(p.stat().st_size for p in paths)
        n_dec, t_dec = decompress_only(paths)
        n_base, t_base = baseline(paths)
        n_ours, t_ours, stats = ours(paths, args.subreddits, prefilter=True)
        n_nopf, t_nopf, _ = ours(paths, args.subreddits, prefilter=False)

    print(f"dump: {n_base:,} lines, {size / 1e6:.1f} MB compressed; kept {stats['kept']:,} "
          f"(posts {stats['posts_kept']:,}, comments {stats['comments_kept']:,}); dropped {stats['dropped']}")
    rows = [
        ("zstd decompress only", n_dec, t_dec),
        ("baseline: zstd + json.loads", n_base, t_base),
        ("ours (prefilter, shards written)", n_ours, t_ours),
        ("ours (no prefilter)", n_nopf, t_nopf),
    ]
    print(f"{'reader':36s} {'lines/s':>12s} {'seconds':>8s} {'vs baseline':>12s}")
    for name, n, t in rows:
        print(f"{name:36s} {n / t:12,.0f} {t:8.2f} {t_base / t:11.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
