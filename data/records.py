"""Post and comment records: one schema for every source (praw, simulated Reddit, dumps).

Reddit's API objects and the Pushshift/Arctic-Shift dumps share one JSON shape (the `data` of a `t3`
submission or `t1` comment), so a single pair of converters turns either into our rows. The converters
absorb the type drift of real dumps (`created_utc` as int, float or string; `upvote_ratio` missing;
`ups`/`downs` in old files; `edited` as bool or timestamp) and raise `MalformedRecord` for a row that
cannot be read, so callers can count and skip it.

Every row keeps `retrieved_utc`: a score is a snapshot, and a later snapshot of the same id replaces an
earlier one (see `data.shards.load_records`).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import datasets

DELETED_MARKERS = frozenset({"[deleted]", "[removed]", "[deleted by user]", "[removed by reddit]"})

POST_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "subreddit": datasets.Value("string"),
        "title": datasets.Value("string"),
        "selftext": datasets.Value("string"),
        "author": datasets.Value("string"),
        "created_utc": datasets.Value("float64"),
        "score": datasets.Value("int64"),
        "upvote_ratio": datasets.Value("float64"),
        "num_comments": datasets.Value("int64"),
        "over_18": datasets.Value("bool"),
        "edited": datasets.Value("bool"),
        "stickied": datasets.Value("bool"),
        "distinguished": datasets.Value("string"),
        "permalink": datasets.Value("string"),
        "retrieved_utc": datasets.Value("float64"),
        "source": datasets.Value("string"),
    }
)

COMMENT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "link_id": datasets.Value("string"),
        "parent_id": datasets.Value("string"),
        "post_id": datasets.Value("string"),
        "subreddit": datasets.Value("string"),
        "body": datasets.Value("string"),
        "author": datasets.Value("string"),
        "created_utc": datasets.Value("float64"),
        "score": datasets.Value("int64"),
        "depth": datasets.Value("int64"),
        "is_submitter": datasets.Value("bool"),
        "edited": datasets.Value("bool"),
        "stickied": datasets.Value("bool"),
        "distinguished": datasets.Value("string"),
        "retrieved_utc": datasets.Value("float64"),
        "source": datasets.Value("string"),
    }
)

FEATURES = {"posts": POST_FEATURES, "comments": COMMENT_FEATURES}


class MalformedRecord(ValueError):
    """A raw object lacks a field we need or has one of an unreadable type."""


class DeletedContent(ValueError):
    """The object's text or author was deleted or removed: it is dropped and counted, not stored."""


def hash_author(author: str | None, salt: str) -> str:
    """Salted SHA-256 of a username, so pairs can exclude OP/moderators without storing who wrote what.

    An empty salt keeps the plain name (an explicit opt-out in the scrape config).
    """
    if author is None:
        return ""
    if not salt:
        return author
    return hashlib.sha256(f"{salt}:{author}".encode()).hexdigest()[:16]


def _float(raw: Mapping[str, Any], key: str, *, required: bool = True) -> float | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise MalformedRecord(f"field {key!r} is missing")
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MalformedRecord(f"field {key!r}={value!r} is not a number") from None


def _score(raw: Mapping[str, Any]) -> int:
    """`score`, or `ups - downs` in old dumps that lack it."""
    if raw.get("score") is not None:
        return int(_float(raw, "score"))  # type: ignore[arg-type]
    if raw.get("ups") is not None:
        return int(_float(raw, "ups")) - int(_float(raw, "downs", required=False) or 0)  # type: ignore[arg-type]
    raise MalformedRecord("field 'score' is missing (and no 'ups' to fall back on)")


def _str(raw: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            raise MalformedRecord(f"field {key!r} is missing")
        return ""
    return str(value)


def _bool(raw: Mapping[str, Any], key: str) -> bool:
    # `edited` is False or an edit timestamp; other flags are plain bools, sometimes absent.
    value = raw.get(key)
    return bool(value) and value != "false"


def _strip_prefix(fullname: str) -> str:
    return fullname.split("_", 1)[1] if "_" in fullname[:3] else fullname


def _check_not_deleted(text: str, author: str | None, what: str) -> None:
    if text.strip() in DELETED_MARKERS or author in (None, "[deleted]"):
        raise DeletedContent(f"{what} deleted or removed")


def post_from_json(raw: Mapping[str, Any], *, retrieved_utc: float, salt: str, source: str) -> dict:
    """A `t3` object (API `data` or dump line) -> a row of POST_FEATURES."""
    if not isinstance(raw, Mapping):
        raise MalformedRecord(f"expected a JSON object, got {type(raw).__name__}")
    selftext = _str(raw, "selftext", required=False)
    author = raw.get("author")
    # A file that carries no author field at all (e.g. a "top posts" export) has not deleted anyone.
    _check_not_deleted(selftext, author if "author" in raw else "", "post")
    if raw.get("removed_by_category"):
        raise DeletedContent("post removed")
    ratio = _float(raw, "upvote_ratio", required=False)
    post_id = _strip_prefix(_str(raw, "id"))
    subreddit = _str(raw, "subreddit")
    return {
        "id": post_id,
        "subreddit": subreddit,
        "title": _str(raw, "title"),
        "selftext": selftext,
        "author": hash_author(author, salt),
        "created_utc": _float(raw, "created_utc"),
        "score": _score(raw),
        "upvote_ratio": ratio,
        "num_comments": int(_float(raw, "num_comments", required=False) or 0),
        "over_18": _bool(raw, "over_18"),
        "edited": _bool(raw, "edited"),
        "stickied": _bool(raw, "stickied"),
        "distinguished": raw.get("distinguished") or "",
        "permalink": raw.get("permalink") or f"/r/{subreddit}/comments/{post_id}/",
        "retrieved_utc": float(raw.get("retrieved_on") or raw.get("retrieved_utc") or retrieved_utc),
        "source": source,
    }


def comment_from_json(
    raw: Mapping[str, Any], *, retrieved_utc: float, salt: str, source: str, depth: int | None = None
) -> dict:
    """A `t1` object (API `data` or dump line) -> a row of COMMENT_FEATURES."""
    if not isinstance(raw, Mapping):
        raise MalformedRecord(f"expected a JSON object, got {type(raw).__name__}")
    body = _str(raw, "body")
    author = raw.get("author")
    _check_not_deleted(body, author, "comment")
    link_id = _str(raw, "link_id")
    parent_id = _str(raw, "parent_id")
    if depth is None:
        depth = int(raw["depth"]) if raw.get("depth") is not None else (0 if parent_id.startswith("t3_") else 1)
    return {
        "id": _strip_prefix(_str(raw, "id")),
        "link_id": link_id if link_id.startswith("t3_") else f"t3_{link_id}",
        "parent_id": parent_id,
        "post_id": _strip_prefix(link_id),
        "subreddit": _str(raw, "subreddit"),
        "body": body,
        "author": hash_author(author, salt),
        "created_utc": _float(raw, "created_utc"),
        "score": _score(raw),
        "depth": depth,
        "is_submitter": _bool(raw, "is_submitter"),
        "edited": _bool(raw, "edited"),
        "stickied": _bool(raw, "stickied"),
        "distinguished": raw.get("distinguished") or "",
        "retrieved_utc": float(raw.get("retrieved_on") or raw.get("retrieved_utc") or retrieved_utc),
        "source": source,
    }
