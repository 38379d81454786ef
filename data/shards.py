"""Parquet shards written as data arrives, and read back as one deduplicated `datasets.Dataset`.

Why shards: a scrape or dump ingest runs for hours; writing a shard every few hundred rows means a crash
loses at most the rows in memory, never a written file. Each shard is written to a temporary name and
renamed, so a reader never sees half a file. Snapshots of the same id from several shards are merged by
`load_records`, keeping the latest `retrieved_utc`.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from data.records import FEATURES


class ShardWriter:
    """Buffers rows of one kind ("posts" or "comments") and writes numbered Parquet shards."""

    def __init__(self, directory: str | Path, kind: str, rows_per_shard: int = 500) -> None:
        if kind not in FEATURES:
            raise ValueError(f"kind must be one of {sorted(FEATURES)}, got {kind!r}")
        self.directory = Path(directory) / kind
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.rows_per_shard = rows_per_shard
        self.schema = FEATURES[kind].arrow_schema
        self._buffer: list[dict] = []
        self.rows_written = 0
        # Continue numbering after shards left by an earlier (interrupted) run.
        existing = sorted(self.directory.glob("part-*.parquet"))
        self._next_index = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0

    def add(self, row: dict) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> Path | None:
        """Write buffered rows as one shard (atomically); returns its path, or None if nothing buffered."""
        if not self._buffer:
            return None
        table = pa.Table.from_pylist(self._buffer, schema=self.schema)
        path = self.directory / f"part-{self._next_index:05d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        self._next_index += 1
        self.rows_written += len(self._buffer)
        self._buffer.clear()
        return path

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()  # rows collected before an error are kept, not lost


def shard_paths(directory: str | Path, kind: str) -> list[Path]:
    return sorted((Path(directory) / kind).glob("part-*.parquet"))


def load_records(directory: str | Path, kind: str) -> datasets.Dataset:
    """All shards of `kind` under `directory` as one Dataset, one row per id (latest snapshot wins)."""
    paths = shard_paths(directory, kind)
    if not paths:
        # Dataset.from_list([]) drops the columns under datasets 5.2: build the empty table from the schema.
        return datasets.Dataset(FEATURES[kind].arrow_schema.empty_table())
    table = pa.concat_tables([pq.read_table(p, schema=FEATURES[kind].arrow_schema) for p in paths])
    ids = table.column("id").to_pylist()
    retrieved = table.column("retrieved_utc").to_pylist()
    latest: dict[str, int] = {}
    for i, (row_id, t) in enumerate(zip(ids, retrieved)):
        j = latest.get(row_id)
        if j is None or t >= retrieved[j]:
            latest[row_id] = i
    keep = sorted(latest.values())
    return datasets.Dataset(table.take(keep)).cast(FEATURES[kind])


def load_rows(directory: str | Path, kind: str) -> list[dict]:
    """Records as dicts; a kind with no shards yet is empty (`load_records` cannot build an empty Dataset
    under datasets 5.2)."""
    return load_records(directory, kind).to_list() if shard_paths(directory, kind) else []
