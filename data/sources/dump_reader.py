"""Reading one dump file: decompressed chunks, lines, and the lines a raw-bytes prefilter lets through.

    from data.sources.dump_reader import iter_lines
    n = sum(1 for _ in iter_lines("dumps/RC_2023-01.zst"))

What this module is for (`data.sources.dumps` decides what to keep):
1. A damaged file is an error, never a short read. `zstandard`'s `stream_reader` ends quietly at the end of
   a truncated file, as if the stream were complete. Here every zstd frame must reach its end mark: a file
   that stops inside a frame, or whose bytes do not decode, raises `DumpReadError` naming the file, the
   compressed bytes read before the fault and the complete lines handed out before it.
2. Few Python objects per line. `iter_candidates` searches each decompressed chunk as a whole with the
   prefilter regex and cuts out only the lines around a match; the other lines (most of a dump) are only
   counted, by numpy, and never become Python objects.
3. One thread. Decompression is the floor (about half the time of a subreddit-filtered ingest, see
   `bench/ingest.py`); moving it to a thread or a child process was measured on a busy 2-core machine
   and lost: a thread waits for the GIL after every call while the scanner holds it, and a child adds
   pipe copies and stalls whenever either process is descheduled.

Plain `.ndjson`/`.jsonl` files are read the same way (without decompression); their end cannot be checked.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import zstandard
from tqdm.auto import tqdm

ZSTD_WINDOW = 2**31  # Pushshift/Arctic-Shift files are written with --long=31
# Chunks of ~1 MB are scanned while they are still in the CPU cache (16 MB chunks: ~10% slower overall).
READ_BYTES = 1 << 17  # compressed bytes per decompress call (~1 MB of NDJSON)
WRITE_BYTES = 1 << 21  # decompressor output buffer (one allocation per call, not one per 128 KB)
CHUNK_BYTES = 1 << 21  # at most this many decompressed bytes are scanned at once


class DumpReadError(Exception):
    """A dump file cannot be read to its end: its zstd stream is truncated or corrupt, or reading it failed.

    `compressed_read` is how many bytes of the file decoded cleanly before the fault; `lines_read` how many
    complete lines were handed out before it (a partial line at the fault is not counted).
    """

    def __init__(self, path: Path, reason: str, compressed_read: int, compressed_size: int, lines_read: int = 0):
        super().__init__(path, reason, compressed_read, compressed_size, lines_read)
        self.path = Path(path)
        self.reason = reason
        self.compressed_read = compressed_read
        self.compressed_size = compressed_size
        self.lines_read = lines_read

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.reason}; it failed after {self.compressed_read:,} of {self.compressed_size:,} "
            f"compressed bytes and {self.lines_read:,} complete lines"
        )

    def to_dict(self) -> dict:
        return {
            "reason": self.reason,
            "compressed_read": self.compressed_read,
            "compressed_size": self.compressed_size,
            "lines_read": self.lines_read,
        }


# ---------------------------------------------------------------------------------------------- chunks


def _newlines(data: bytes) -> int:
    # numpy counts a byte value ~3x faster than bytes.count
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))


def _pieces(data: bytes, position: int) -> Iterator[tuple[bytes, int, int]]:
    """`data` in pieces of at most CHUNK_BYTES, each with the compressed position and its newline count."""
    if len(data) <= CHUNK_BYTES:
        yield data, position, _newlines(data)
        return
    for start in range(0, len(data), CHUNK_BYTES):
        piece = data[start : start + CHUNK_BYTES]
        yield piece, position, _newlines(piece)


def _zstd_chunks(path: Path) -> Iterator[tuple[bytes, int, int]]:
    """Decompress `path` frame by frame in this process; a file may hold several frames (pzstd,
    concatenated files) and each must reach its end mark."""
    size = path.stat().st_size
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW)
    dobj = dctx.decompressobj(write_size=WRITE_BYTES)
    in_frame = False  # bytes of a frame were fed and its end mark was not seen yet
    position = 0  # compressed bytes fed to the decompressor before the current block
    with open(path, "rb") as raw:
        while block := raw.read(READ_BYTES):
            data = block
            while data:
                try:
                    out = dobj.decompress(data)
                except zstandard.ZstdError as err:
                    raise DumpReadError(path, f"corrupt zstd data ({err})", position, size) from None
                in_frame = True
                data = b""
                if dobj.eof:  # this frame ended; whatever follows starts the next one
                    data = dobj.unused_data
                    dobj = dctx.decompressobj(write_size=WRITE_BYTES)
                    in_frame = False
                if out:
                    yield from _pieces(out, position + len(block) - len(data))
            position += len(block)
    if position == 0:
        raise DumpReadError(path, "empty file (0 bytes), not a zstd stream", 0, 0)
    if in_frame:
        raise DumpReadError(path, "truncated zstd stream: the file ends inside a frame", position, size)


def _plain_chunks(path: Path) -> Iterator[tuple[bytes, int, int]]:
    with open(path, "rb") as raw:
        while block := raw.read(CHUNK_BYTES):
            yield from _pieces(block, raw.tell())


def iter_chunks(path: str | Path) -> Iterator[tuple[bytes, int, int]]:
    """(decompressed bytes, compressed bytes consumed so far, newlines in the bytes) for a `.zst` or plain
    file; raises `DumpReadError` (with `lines_read=0`: callers that count lines fill it in)."""
    path = Path(path)
    return _zstd_chunks(path) if path.suffix == ".zst" else _plain_chunks(path)


@contextmanager
def _progress_bar(path: Path, enabled: bool):
    """Progress in compressed bytes (the only size known up front); `update(position)` moves it."""
    with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, disable=not enabled,
              leave=False) as bar:
        yield lambda position: bar.update(position - bar.n)


# ---------------------------------------------------------------------------------------------- lines


def iter_lines(path: str | Path, progress: bool = False) -> Iterator[bytes]:
    """Raw lines (without the newline) of a `.zst` or plain NDJSON file, streamed in chunks."""
    path = Path(path)
    lines = 0
    carry = b""
    with _progress_bar(path, progress) as update:
        try:
            for data, position, _ in iter_chunks(path):
                parts = (carry + data).split(b"\n")
                carry = parts.pop()
                lines += len(parts)
                yield from parts
                update(position)
        except DumpReadError as err:
            err.lines_read = lines
            raise
    if carry:
        yield carry  # last line without a trailing newline (or a truncated one: counted as malformed)


def iter_candidates(
    path: str | Path, regex: re.Pattern[bytes] | None, progress: bool = False
) -> Iterator[tuple[int, bytes | None]]:
    """(lines skipped by the prefilter since the last item, next candidate line or None).

    With a regex, each decompressed chunk is searched as a whole and only the lines around a match are cut
    out; the lines of other subreddits (most of a dump) are only counted. Without one, every line is a
    candidate. The skipped counts plus the candidates are every line of the file.
    """
    if regex is None:
        for line in iter_lines(path, progress=progress):
            yield 0, line
        return
    path = Path(path)
    lines = 0
    carry = b""  # the start of a line whose end is in a later chunk
    with _progress_bar(path, progress) as update:
        try:
            for data, position, n in iter_chunks(path):
                first = data.find(b"\n")
                if first < 0:  # a line longer than the chunk
                    carry += data
                    continue
                # the line that began in an earlier chunk, then the chunk's own lines, never copied whole
                head = carry + data[:first] if carry else data[:first]
                hits = 0
                if regex.search(head):
                    yield 0, head
                    hits = 1
                cut = data.rfind(b"\n") + 1  # data[first + 1 : cut] holds whole lines only
                done = first + 1  # offset just past the last line handed out
                for match in regex.finditer(data, first + 1, cut):
                    if match.start() < done:
                        continue  # a second match on a line already handed out
                    start = data.rfind(b"\n", 0, match.start()) + 1
                    end = data.find(b"\n", match.end())
                    yield 0, data[start:end]
                    hits += 1
                    done = end + 1
                lines += n
                yield n - hits, None
                carry = data[cut:]
                update(position)
        except DumpReadError as err:
            err.lines_read = lines
            raise
    if carry:
        yield (0, carry) if regex.search(carry) else (1, None)
