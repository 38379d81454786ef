"""Dump reader: drifting types, malformed lines, join on link_id, filters, resume, large-window zstd."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest
import zstandard

from data.records import DELETED_AUTHOR, comment_from_json
from data.shards import load_records, shard_paths
from data.sources import dumps
from data.sources.dumps import DumpConfig, ingest_dumps, iter_lines

JAN = dt.datetime(2023, 1, 10, tzinfo=dt.timezone.utc).timestamp()


def write_zst(path: Path, lines: list[str | bytes], window_log: int = 29) -> Path:
    """A zstd frame whose window is larger than zstandard's default decoding limit (like real dumps)."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log, enable_ldm=True)
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(buf, closefd=False) as w:
        for line in lines:
            w.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
    path.write_bytes(buf.getvalue())
    return path


def post(pid: str, sub: str = "tifu", **kw) -> str:
    obj = {"id": pid, "subreddit": sub, "title": f"title {pid}", "selftext": f"body {pid}", "author": "alice",
           "created_utc": JAN, "score": 10, "num_comments": 2}
    obj.update(kw)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def comment(cid: str, pid: str, sub: str = "tifu", **kw) -> str:
    obj = {"id": cid, "link_id": f"t3_{pid}", "parent_id": f"t3_{pid}", "subreddit": sub, "body": f"reply {cid}",
           "author": "bob", "created_utc": int(JAN) + 60, "score": 5}
    obj.update(kw)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


@pytest.fixture
def dump_files(tmp_path: Path) -> tuple[Path, Path]:
    rs = [
        post("p1"),  # float created_utc
        post("p2", created_utc=str(int(JAN)), upvote_ratio=..., score=..., ups=30, downs=4),  # old file drift
        post("p3", created_utc=int(JAN), _meta={"retrieved_2nd_on": int(JAN) + 86400}, score=42),
        post("p4", selftext="[deleted]"),
        post("p5", author="[deleted]"),  # a deleted account, text intact: kept
        post("p6", sub="AskReddit"),
        post("p7", score=-3),
        post("p8", created_utc=JAN - 40 * 86400),  # before start_date
        post("p9", created_utc="not a time"),
        post("p10", title=...),  # missing field
        '{"id": "p11", "subreddit": "tifu", "title": "trunc',  # truncated JSON
        "[1, 2, 3]",  # not an object
        "",
        post("p12", sub="TIFU", spacing=1).replace('": "', '":"'),  # other case, compact separators
    ]
    rc = [
        comment("c1", "p1"),
        comment("c2", "p1", created_utc=f"{JAN + 70:.1f}"),
        comment("c3", "p2", body="[removed]"),
        comment("c4", "p4"),  # post deleted -> orphan
        comment("c5", "p6", sub="AskReddit"),
        comment("c6", "p3", parent_id="t1_c1"),  # reply to a comment
        comment("c7", "p3", score=-10),
        comment("c8", "p12", sub="TIFU"),
        comment("c9", "p3", score=...),  # no score and no ups
        "{not json",
    ]
    return write_zst(tmp_path / "RS_2023-01.zst", rs), write_zst(tmp_path / "RC_2023-01.zst", rc)


def make_cfg(paths: list[Path], **kw) -> DumpConfig:
    base = dict(paths=[str(p) for p in paths], subreddits=["tifu"], start_date=dt.date(2023, 1, 1),
                end_date=dt.date(2023, 2, 1), min_post_score=0, min_comment_score=0, progress=False,
                rows_per_shard=2)
    return DumpConfig(**(base | kw))


def test_large_window_zst_needs_our_decoder(dump_files: tuple[Path, Path]) -> None:
    rs, _ = dump_files
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(rs.read_bytes())).read()
    assert len(list(iter_lines(rs))) == 14


def test_ingest_filters_joins_and_counts(dump_files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "records"
    stats = ingest_dumps(make_cfg(list(dump_files)), out)
    posts = load_records(out, "posts")
    comments = load_records(out, "comments")
    assert sorted(posts["id"]) == ["p1", "p12", "p2", "p3", "p5"]
    by_id = {r["id"]: r for r in posts}
    assert by_id["p2"]["score"] == 26 and by_id["p2"]["upvote_ratio"] is None
    assert by_id["p2"]["created_utc"] == float(int(JAN))
    assert by_id["p3"]["retrieved_utc"] == float(int(JAN) + 86400)
    assert by_id["p1"]["author"] != "alice" and len(by_id["p1"]["author"]) == 16  # salted hash
    assert by_id["p5"]["author"] == DELETED_AUTHOR
    assert all(r["source"] == "dump" for r in posts)
    assert sorted(comments["id"]) == ["c1", "c2", "c8"]
    assert set(comments["post_id"]) <= set(posts["id"])
    assert stats.posts_kept == 5 and stats.comments_kept == 3
    assert stats.lines_read == 24
    d = stats.dropped
    assert d["deleted"] == 2  # p4, c3
    assert d["prefiltered"] == 5  # p6, c5, and the empty, list and bad-JSON lines (never parsed)
    assert d["score"] == 2  # p7, c7
    assert d["date"] == 1  # p8
    assert d["malformed"] == 4  # p9, p10, truncated (it names tifu), c9
    assert d["orphan_comment"] == 1 and d["not_top_level"] == 1
    assert stats.lines_read == stats.kept + sum(d.values())


def test_without_prefilter_same_rows(dump_files: tuple[Path, Path], tmp_path: Path) -> None:
    a = ingest_dumps(make_cfg(list(dump_files)), tmp_path / "a")
    b = ingest_dumps(make_cfg(list(dump_files), prefilter=False), tmp_path / "b")
    assert (a.posts_kept, a.comments_kept) == (b.posts_kept, b.comments_kept)
    assert b.dropped["subreddit"] == 2 and "prefiltered" not in b.dropped
    assert b.dropped["malformed"] == 6  # now the list and bad-JSON lines are parsed and counted
    assert b.dropped["empty"] == 1 and b.lines_read == a.lines_read
    ids_a, ids_b = (sorted(load_records(tmp_path / d, "comments")["id"]) for d in "ab")
    assert ids_a == ids_b


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_chunked_prefilter_matches_line_by_line(dump_files: tuple[Path, Path], chunk: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines cut out around regex matches (across chunk borders) are exactly the lines the regex matches."""
    monkeypatch.setattr(dumps, "CHUNK_BYTES", chunk)
    regex = dumps._subreddit_regex(["tifu"])
    for path in dump_files:
        expected = [line for line in iter_lines(path) if regex.search(line)]
        items = list(dumps.iter_candidates(path, regex))
        assert [line for _, line in items if line is not None] == expected
        assert sum(skipped for skipped, _ in items) + len(expected) == len(list(iter_lines(path)))


def test_plain_ndjson_sniffed_and_no_filters(tmp_path: Path) -> None:
    (tmp_path / "subs.jsonl").write_text("\n".join([post("a1", sub="AskReddit"), post("a2")]) + "\n")
    (tmp_path / "replies.ndjson").write_text(comment("k1", "a1", sub="AskReddit") + "\n")
    out = tmp_path / "records"
    stats = ingest_dumps(DumpConfig(paths=[str(tmp_path / "*.*json*")], progress=False, salt=""), out)
    assert stats.posts_kept == 2 and stats.comments_kept == 1
    assert load_records(out, "posts")["author"] == ["alice", "alice"]


def test_resume_skips_done_files_and_drops_partial_shards(dump_files: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    rs, rc = dump_files
    out = tmp_path / "records"
    real = dumps._ingest_file

    def crash_on_comments(path, kind, flt, writer, post_ids, progress):
        if kind == "comments":  # one shard written, then the process dies mid-file
            row = comment_from_json(json.loads(comment("zz", "p1")), retrieved_utc=0.0, salt="", source="dump")
            writer.add(row)
            writer.flush()
            raise KeyboardInterrupt
        return real(path, kind, flt, writer, post_ids, progress)

    monkeypatch.setattr(dumps, "_ingest_file", crash_on_comments)
    with pytest.raises(KeyboardInterrupt):
        ingest_dumps(make_cfg([rs, rc]), out)
    assert load_records(out, "comments")["id"] == ["zz"]
    monkeypatch.setattr(dumps, "_ingest_file", real)

    stats = ingest_dumps(make_cfg([rs, rc]), out)
    assert stats.files_skipped == 1 and stats.posts_kept == 5 and stats.comments_kept == 3
    assert sorted(load_records(out, "comments")["id"]) == ["c1", "c2", "c8"]
    assert len(load_records(out, "posts")) == 5  # p5 (deleted account) included
    n_shards = len(shard_paths(out, "posts")) + len(shard_paths(out, "comments"))
    again = ingest_dumps(make_cfg([rs, rc]), out)  # everything done: nothing rewritten
    assert again.files_skipped == 2 and again.kept == 8
    assert len(shard_paths(out, "posts")) + len(shard_paths(out, "comments")) == n_shards


def test_refuses_foreign_directory_and_bad_config(dump_files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "records"
    (out / "posts").mkdir(parents=True)
    (out / "posts" / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not written by a dump ingest"):
        ingest_dumps(make_cfg(list(dump_files)), out)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        ingest_dumps(make_cfg([tmp_path / "nope*.zst"]), tmp_path / "other")
    with pytest.raises(ValueError, match="subreddits"):
        DumpConfig(paths=["x"], subreddits=["r/not a name"])
    with pytest.raises(ValueError, match="extra"):
        DumpConfig(paths=["x"], subredits=["tifu"])
