"""Recorded reddit.com API responses (praw's vcrpy cassettes) -> dump-style NDJSON files (RS_*.ndjson, RC_*.ndjson).

    python bench/cassettes_to_dump.py tests/fixtures/reddit_cassettes --out runs/cassettes/dumps
    python -m pipelines scrape --config configs/real.yaml run.name=cassettes \
        "scrape.dumps.paths=[runs/cassettes/dumps/*.ndjson]"
    python -m pipelines build-data --config configs/real.yaml run.name=cassettes ...   # same-post comment pairs

Why: the recordings hold ~2,100 real comments with the scores reddit.com showed (three threads), the only real
comment votes we have. A `t3`/`t1` object in an API response is the same JSON as a line of a Pushshift dump
(data/records.py reads both), so every such object found anywhere in a response body (listings, `replies`,
`/api/morechildren` answers) is written as one dump line; `more` stubs carry no text and are skipped. An id seen
twice keeps its last recorded version. The counts per kind and file are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator


def things(node: Any) -> Iterator[tuple[str, dict]]:
    """Every (kind, data) of a `t1` comment or `t3` post inside a parsed API response, depth first."""
    if isinstance(node, dict):
        kind, data = node.get("kind"), node.get("data")
        if kind in ("t1", "t3") and isinstance(data, dict):
            yield kind, data
        for value in node.values():
            yield from things(value)
    elif isinstance(node, list):
        for value in node:
            yield from things(value)


def response_bodies(cassette: Path) -> Iterator[Any]:
    """Parsed JSON bodies of a cassette's successful responses (others, and non-JSON bodies, are skipped)."""
    for interaction in json.loads(cassette.read_text())["interactions"]:
        response = interaction["response"]
        if response["status"]["code"] != 200:
            continue
        body = response["body"].get("string", "")
        try:
            yield json.loads(body)
        except ValueError:
            continue


def convert(cassettes: list[Path], out: Path) -> Counter[str]:
    """Write out/RS_cassettes.ndjson and out/RC_cassettes.ndjson; returns counts by kind and by file."""
    found: dict[str, dict[str, dict]] = {"t3": {}, "t1": {}}
    counts: Counter[str] = Counter()
    for path in cassettes:
        for body in response_bodies(path):
            for kind, data in things(body):
                if "id" not in data:
                    continue
                clean = {k: v for k, v in data.items() if k != "replies"}  # replies are written as their own lines
                found[kind][data["id"]] = clean
                counts[f"{path.name}/{kind}"] += 1
    out.mkdir(parents=True, exist_ok=True)
    for kind, name in (("t3", "RS_cassettes.ndjson"), ("t1", "RC_cassettes.ndjson")):
        with open(out / name, "w") as f:
            for data in found[kind].values():
                f.write(json.dumps(data) + "\n")
        counts[name] = len(found[kind])
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cassettes", type=Path, help="a cassette file or a folder of them (*.json)")
    p.add_argument("--out", type=Path, required=True, help="folder for RS_cassettes.ndjson and RC_cassettes.ndjson")
    args = p.parse_args(argv)
    files = sorted(args.cassettes.glob("*.json")) if args.cassettes.is_dir() else [args.cassettes]
    if not files:
        print(f"no cassette (*.json) in {args.cassettes}", file=sys.stderr)
        return 2
    counts = convert(files, args.out)
    for key in sorted(counts):
        print(f"{key}: {counts[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
