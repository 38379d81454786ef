"""Dump reader: drifting types, malformed lines, join on link_id, filters, resume, large-window zstd."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from pathlib import Path

import pytest
import zstandard

from data.records import DELETED_AUTHOR, comment_from_json
from data.shards import load_records, shard_paths
from data.sources import dump_reader, dumps
from data.sources.dumps import DumpConfig, ingest_dumps, iter_lines

JAN = dt.datetime(2023, 1, 10, tzinfo=dt.timezone.utc).timestamp()


def write_zst(path: Path, lines: list[str | bytes], window_log: int = 29, checksum: bool = False) -> Path:
    """A zstd frame whose window is larger than zstandard's default decoding limit (like real dumps)."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log, enable_ldm=True,
                                                            write_checksum=checksum)
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
    monkeypatch.setattr(dump_reader, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(dump_reader, "READ_BYTES", chunk)  # compressed input in pieces too (frame end checks)
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


# ---------------------------------------------------------------------------------------------- damaged files

REAL_RS = Path(__file__).parent / "fixtures" / "real_tldr" / "RS_top_tldr_200.zst"


def silent_prefix(path: Path) -> bytes:
    """What zstandard's stream_reader hands out for a damaged file before it stops (quietly, when truncated)."""
    out = b""
    with open(path, "rb") as raw:
        reader = zstandard.ZstdDecompressor(max_window_size=dumps.ZSTD_WINDOW).stream_reader(raw)
        try:
            while chunk := reader.read(1 << 16):
                out += chunk
        except zstandard.ZstdError:
            pass
    return out


def all_cfg(paths: list[Path], **kw) -> DumpConfig:
    """No filters: every readable line of the real posts counts."""
    return DumpConfig(**(dict(paths=[str(p) for p in paths], progress=False, rows_per_shard=40) | kw))


def test_truncated_real_dump_is_an_error_keeps_nothing_of_it_and_resumes(tmp_path: Path) -> None:
    whole = REAL_RS.read_bytes()
    dump = tmp_path / "dumps" / "RS_top_tldr.zst"
    dump.parent.mkdir()
    dump.write_bytes(whole[: len(whole) // 2])
    prefix = silent_prefix(dump)
    assert 0 < prefix.count(b"\n") < 200  # zstandard alone would have read these and said nothing

    out = tmp_path / "records"
    with pytest.raises(dumps.DumpFilesDamaged) as info:
        ingest_dumps(all_cfg([dump]), out)
    [fault] = info.value.faults
    assert fault.path == dump and "truncated" in fault.reason
    assert fault.lines_read == prefix.count(b"\n")
    assert fault.compressed_read == fault.compressed_size == len(whole) // 2
    message = str(info.value)
    assert str(dump) in message and f"{fault.lines_read:,} complete lines" in message
    assert "none of its rows were kept" in message and "allow_truncated" in message
    assert shard_paths(out, "posts") == []  # the rows before the cut are not mixed in
    assert json.loads((out / dumps.STATE_FILE).read_text())["done"] == {}

    dump.write_bytes(whole)  # the user re-downloads the file and reruns
    stats = ingest_dumps(all_cfg([dump]), out)
    reference = ingest_dumps(all_cfg([REAL_RS]), tmp_path / "reference")
    assert stats.lines_read == reference.lines_read == 200
    assert stats.dropped == reference.dropped and stats.posts_kept == reference.posts_kept
    assert sorted(load_records(out, "posts")["id"]) == sorted(load_records(tmp_path / "reference", "posts")["id"])


def test_allow_truncated_keeps_the_rows_before_the_cut_and_says_so(dump_files: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    rs, rc = dump_files
    whole = rc.read_bytes()
    rc.write_bytes(whole[:-6])  # the end mark and checksum of the last block are gone
    lines_before = silent_prefix(rc).split(b"\n")[:-1]  # complete lines only
    plain_rc = tmp_path / "RC_plain.ndjson"  # the same complete lines, as a file that reads whole
    plain_rc.write_bytes(b"".join(line + b"\n" for line in lines_before))

    out = tmp_path / "records"
    stats = ingest_dumps(make_cfg([rs, rc], allow_truncated=True), out)
    reference = ingest_dumps(make_cfg([rs, plain_rc]), tmp_path / "reference")
    assert stats.files_truncated == 1 and stats.truncated[0]["file"] == str(rc)
    assert stats.truncated[0]["lines_read"] == len(lines_before)
    assert stats.comments_kept == reference.comments_kept
    assert sorted(load_records(out, "comments")["id"]) == sorted(load_records(tmp_path / "reference", "comments")["id"])
    state = json.loads((out / dumps.STATE_FILE).read_text())
    assert sum(entry["stats"]["files_truncated"] for entry in state["done"].values()) == 1

    again = ingest_dumps(make_cfg([rs, rc], allow_truncated=True), out)  # done, even if cut short
    assert again.files_skipped == 2 and again.files_truncated == 1

    rc.write_bytes(whole)  # the repaired file is read again; its old rows are replaced, not duplicated
    fixed = ingest_dumps(make_cfg([rs, rc]), out)
    assert fixed.files_truncated == 0 and fixed.comments_kept == 3
    comments = pq_rows(out, "comments")
    assert sorted(comments) == ["c1", "c2", "c8"]


def pq_rows(out: Path, kind: str) -> list[str]:
    """Every stored id, duplicates included (load_records would hide them)."""
    import pyarrow.parquet as pq

    return [i for p in shard_paths(out, kind) for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]


def corrupt(path: Path, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = random.Random(seed).randbytes(64)
    path.write_bytes(bytes(data))


def test_corrupt_middle_is_an_error_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dump_reader, "READ_BYTES", 4096)  # positions to the nearest 4 KiB
    lines = [post(f"q{i}", selftext=f"body {i} " + "lorem ipsum " * (i % 40)) for i in range(3000)]
    rs = write_zst(tmp_path / "RS_2023-01.zst", lines, checksum=True)
    rc = write_zst(tmp_path / "RC_2023-01.zst", [comment(f"k{i}", f"q{i}") for i in range(3000)], checksum=True)
    size = rs.stat().st_size
    corrupt(rs)
    out = tmp_path / "records"
    with pytest.raises(dumps.DumpFilesDamaged) as info:
        ingest_dumps(make_cfg([rs, rc], start_date=None, end_date=None), out)
    [fault] = info.value.faults
    assert fault.path == rs and fault.reason.startswith("corrupt zstd data")
    assert 0 < fault.compressed_read < size and 0 < fault.lines_read < 3000
    assert f"{fault.compressed_read:,} of {size:,} compressed bytes" in str(info.value)
    # comments are joined on the posts: with a damaged submission file they are not read at all
    assert f"Not read (comments need every submission file whole): {rc.name}" in str(info.value)
    assert shard_paths(out, "posts") == [] and shard_paths(out, "comments") == []


def test_damaged_comment_file_keeps_the_files_read_whole(dump_files: tuple[Path, Path], tmp_path: Path) -> None:
    rs, rc = dump_files
    rc2 = write_zst(tmp_path / "RC_2023-02.zst", [comment("d1", "p1"), comment("d2", "p3")])
    rc.write_bytes(rc.read_bytes()[:-6])
    out = tmp_path / "records"
    with pytest.raises(dumps.DumpFilesDamaged, match="1 dump file") as info:
        ingest_dumps(make_cfg([rs, rc, rc2]), out)
    assert "Kept in" in str(info.value) and "5 posts and 2 comments from 2 file(s)" in str(info.value)  # p5: [deleted] author, intact text, kept
    assert sorted(load_records(out, "comments")["id"]) == ["d1", "d2"]
    done = json.loads((out / dumps.STATE_FILE).read_text())["done"]
    assert sorted(Path(key.split("|")[0]).name for key in done) == ["RC_2023-02.zst", "RS_2023-01.zst"]


def test_empty_and_multi_frame_zst(tmp_path: Path) -> None:
    empty = tmp_path / "RS_empty.zst"
    empty.write_bytes(b"")
    with pytest.raises(dumps.DumpReadError, match="empty file"):
        list(iter_lines(empty))
    # two frames back to back (pzstd, concatenated files): both are read, and each must be whole
    first, second = write_zst(tmp_path / "a.zst", ["1", "2"]), write_zst(tmp_path / "b.zst", ["3"])
    both = tmp_path / "RS_both.zst"
    both.write_bytes(first.read_bytes() + second.read_bytes())
    assert list(iter_lines(both)) == [b"1", b"2", b"3"]
    both.write_bytes(first.read_bytes() + second.read_bytes()[:-3])
    with pytest.raises(dumps.DumpReadError, match="truncated") as info:
        list(iter_lines(both))
    assert info.value.lines_read == 2


# ---------------------------------------------------------------------------------------------- paths and config


def test_directory_expands_to_its_dump_files(dump_files: tuple[Path, Path], tmp_path: Path) -> None:
    rs, rc = dump_files
    (tmp_path / "notes.txt").write_text("not a dump")
    (tmp_path / "later").mkdir()
    (tmp_path / "A_comments.jsonl").write_text(comment("j1", "p1") + "\n")
    assert [p.name for p in dumps.expand_paths([str(tmp_path)])] == [rs.name, "A_comments.jsonl", rc.name]
    stats = ingest_dumps(make_cfg([tmp_path]), tmp_path / "later" / "records")
    assert stats.files == 3 and sorted(load_records(tmp_path / "later" / "records", "comments")["id"]) == [
        "c1", "c2", "c8", "j1"]

    with pytest.raises(FileNotFoundError, match=r"directory '.*later' holds no dump files \(\*\.zst"):
        dumps.expand_paths([str(tmp_path / "later")])
    with pytest.raises(FileNotFoundError, match="'.*nothing-here/RS_\\*.zst' matches no file"):
        dumps.expand_paths([str(tmp_path / "nothing-here" / "RS_*.zst")])


def test_config_values_fail_with_one_line_naming_the_field() -> None:
    from pydantic import ValidationError

    from pipelines.configio import ConfigError, validate

    cases = {
        "start_date": dict(paths=["x"], start_date="2024-13-01"),
        "end_date": dict(paths=["x"], end_date="someday"),
        "rows_per_shard": dict(paths=["x"], rows_per_shard="many"),
        "paths": dict(paths=[""]),
        "subreddits": dict(paths=["x"], subreddits=["r/not a name"]),
    }
    for key, data in cases.items():
        with pytest.raises(ValidationError) as info:
            DumpConfig(**data)
        [error] = info.value.errors()
        assert error["loc"] == (key,) and "\n" not in error["msg"]
        with pytest.raises(ConfigError, match=rf"^overrides: {key}: ") as info:
            validate(DumpConfig, data, "overrides")
        assert "\n" not in str(info.value)
    with pytest.raises(ValidationError, match="2023-01-01 is not after start_date 2023-02-01") as info:
        DumpConfig(paths=["x"], start_date="2023-02-01", end_date="2023-01-01")
    assert info.value.errors()[0]["loc"] == ("end_date",)
    # what a command line gives: one string, not a list
    cfg = DumpConfig(paths="/data/dumps", subreddits="tifu, r/AskReddit")
    assert cfg.paths == ["/data/dumps"] and cfg.subreddits == ["tifu", "AskReddit"]


def test_json_that_orjson_refuses_is_read_as_before(tmp_path: Path) -> None:
    """NaN is not JSON but `json.loads` reads it (old dumps have it); the faster parser must not drop it."""
    rs = write_zst(tmp_path / "RS_2023-01.zst", [post("n1").replace('"score": 10', '"score": 10, "upvote_ratio": NaN')])
    out = tmp_path / "records"
    stats = ingest_dumps(make_cfg([rs]), out)
    assert stats.posts_kept == 1 and load_records(out, "posts")["id"] == ["n1"]
