"""The praw scraper: subreddit listings (or given thread ids) + comment threads -> a records directory.

    REDDIT_CLIENT_ID=... REDDIT_CLIENT_SECRET=... python -c "from data.sources.reddit_api import \
        ScrapeConfig, scrape; print(scrape(ScrapeConfig(subreddits=['tifu'], limit_per_subreddit=50), 'records'))"
    (or `make scrape SOURCE=sim` for the simulated Reddit, which needs no account)

It talks to Reddit only through the real praw client; the simulated server is just another `oauth_url`
(as is any server named by the REDDIT_OAUTH_URL / REDDIT_URL environment variables, e.g. a replay of
recorded reddit.com traffic in the tests).

Steps, per subreddit (or once over `post_ids`):
1. Fetch one listing page (`/r/{sub}/{listing}?after=...`, 100 posts) with retries.
2. For each post not already done: drop deleted / low-score posts (counted), fetch its thread
   (`/comments/{id}/`, one request), expand up to `replace_more` `more` stubs (one request each, largest
   first, only those within `comment_depth`) and keep the comments down to `comment_depth`, converted by the
   shared `data.records` converters (deleted ones dropped and counted).
   reddit.com refuses some threads for good: 404 (removed, banned), 403 (private, quarantined), 451 (legal).
   Those answers are final, not retried: the listed post is stored anyway with `comments_status` saying
   why it has no comments, and the refusal is counted by reason. The same holds for a refused listing
   (the subreddit is skipped) and a refused or empty `more` stub (the thread keeps what it has).
3. Every `checkpoint_every` posts and after each page: flush the shard writers, THEN write the state
   (listing `after` cursor, ids of finished posts, counts by reason) atomically. A killed run loses at most
   the rows since the last checkpoint and refetches them; a post marked done is always on disk, and a
   refetched post that was already flushed is merged by `load_records` (same id, latest `retrieved_utc`
   wins). A post's counts enter the state together with its id, so a refetch never counts twice.

Rate limits: prawcore paces requests by the `x-ratelimit-*` headers (it spreads the remaining budget over
the window and sleeps until the reset when none is left). Failures: see `data.sources.retry`.

`refresh(...)` re-reads the scores of stored posts and comments with `/api/info` (100 fullnames per request)
and appends new snapshots, since an upvote count is a reading at a time, not a fact.

Credentials come only from the environment (REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET, REDDIT_USER_AGENT) or a
praw.ini site (`data.sources.reddit_client`); they are never stored in the config, the state or the logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from heapq import heappop, heappush
from pathlib import Path
from typing import Any, Callable, Literal

import praw
import requests
from praw.models import MoreComments
from prawcore.exceptions import PrawcoreException
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from data.records import DeletedContent, MalformedRecord, comment_from_json, post_from_json
from data.shards import ShardWriter, load_records
from data.sources.reddit_client import RequestCounter, as_json, make_reddit, reauth
from data.sources.retry import RetryConfig, final_answer, with_retries

log = logging.getLogger(__name__)

STATE_FILE = "scrape_state.json"
DEFAULT_SUBREDDITS = ["relationships", "AskReddit", "relationship_advice", "tifu", "personalfinance"]
LISTING_CAP = 1000  # Reddit serves at most ~1000 items of any listing
INFO_BATCH = 100  # fullnames per /api/info request (Reddit's maximum)


class ScrapeConfig(BaseModel):
    """What to scrape and how; credentials are deliberately not fields (environment or praw.ini only)."""

    model_config = ConfigDict(extra="forbid")

    subreddits: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SUBREDDITS), min_length=1, description="Subreddits, without `r/`."
    )
    listing: Literal["top", "new", "hot", "controversial"] = Field("top", description="Which listing to walk.")
    time_filter: Literal["hour", "day", "week", "month", "year", "all"] = Field(
        "all", description="Time window of the `top`/`controversial` listings (ignored by new/hot)."
    )
    limit_per_subreddit: int = Field(
        LISTING_CAP, ge=1, le=LISTING_CAP, description="Posts read from each listing (Reddit stops at 1000)."
    )
    page_size: int = Field(100, ge=1, le=100, description="Posts per listing request (Reddit's maximum is 100).")
    comment_depth: int = Field(0, ge=0, description="Deepest comment level kept: 0 = top-level comments only.")
    comment_sort: Literal["top", "best", "new", "controversial", "old", "confidence"] = Field(
        "top", description="Thread sort order; with `top`, the comments cut by `comment_limit` are the weakest."
    )
    comment_limit: int | None = Field(
        500, ge=1, description="Comments requested per thread (Reddit's `limit`); None: the server's default."
    )
    replace_more: int = Field(
        0, ge=0, description="`more` stubs expanded per thread (one request each, largest first, only those "
        "within `comment_depth`); 0 drops them unexpanded."
    )
    min_post_score: int | None = Field(None, description="Skip posts below this score (their thread is not fetched).")
    min_comment_score: int | None = Field(None, description="Drop comments below this score.")
    post_ids: list[str] = Field(
        default_factory=list,
        description="Scrape these threads (ids like `n49rw` or fullnames `t3_n49rw`) instead of the listings.",
    )
    reddit_url: str | None = Field(
        None, description="Base URL for tokens and links; None = $REDDIT_URL, else https://www.reddit.com."
    )
    oauth_url: str | None = Field(
        None, description="Base URL of API calls; None = $REDDIT_OAUTH_URL, else https://oauth.reddit.com."
    )
    user_agent: str | None = Field(
        None,
        description="User agent if REDDIT_USER_AGENT is unset (Reddit asks for `platform:app:version (by /u/name)`).",
    )
    praw_site: str | None = Field(
        None, description="Read credentials from this praw.ini site instead of the environment."
    )
    salt: str = Field("upvote-rlhf", description="Salt for author hashes; an empty string stores plain names.")
    rows_per_shard: int = Field(500, gt=0, description="Rows per Parquet shard.")
    checkpoint_every: int = Field(25, ge=1, description="Posts between checkpoints (flush shards, then save state).")
    request_timeout_s: float = Field(16.0, gt=0, description="Seconds to wait for a response before a timeout retry.")
    ratelimit_window_s: int = Field(
        600, ge=1, description="Length of the server's rate-limit window (Reddit: 600 s); prawcore paces over it."
    )
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Backoff for failed pages, threads, batches.")
    progress: bool = Field(True, description="Show tqdm progress bars.")

    @field_validator("subreddits")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        out = [v.strip().removeprefix("/").removeprefix("r/") for v in value]
        bad = [v for v in out if not v.replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"subreddits: {bad} are not subreddit names (letters, digits, _)")
        return out

    @field_validator("post_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        out = list(dict.fromkeys(v.strip().removeprefix("t3_").lower() for v in value))  # order kept, repeats gone
        bad = [v for v in out if not v.isalnum()]
        if bad:
            raise ValueError(f"post_ids: {bad} are not Reddit post ids (base-36, e.g. 'n49rw' or 't3_n49rw')")
        return out


@dataclass
class ScrapeStats:
    """What a scrape (or refresh) did: rows written, HTTP requests by status, retries, drops and skips by reason.

    `dropped`: rows not stored, by rule. `skipped`: final refusals and empty stubs (`thread_not_found`,
    `thread_forbidden`, `thread_unavailable`, `listing_*`, `more_*`), never retried. `comments_status`:
    stored posts by how their comments went (`fetched`, `not_found`, ...).
    """

    posts: int = 0
    comments: int = 0
    posts_skipped_done: int = 0
    requests: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    comments_status: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    ratelimit: dict[str, Any] = field(default_factory=dict)

    @property
    def items_per_request(self) -> float:
        return (self.posts + self.comments) / max(self.requests, 1)

    def to_dict(self) -> dict:
        return asdict(self) | {"items_per_request": self.items_per_request}


# ---------------------------------------------------------------------------------------------- state


def _read_state(out: Path) -> dict:
    path = out / STATE_FILE
    if not path.exists():
        return {"listings": {}, "posts_done": []}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: corrupt scrape state ({err}); delete it to rescrape from the start") from None


def _settings(cfg: ScrapeConfig) -> dict:
    """What shapes the rows: resuming with other values would mix two kinds of rows in one directory."""
    keys = ("comment_depth", "comment_sort", "comment_limit", "replace_more", "min_post_score", "min_comment_score")
    settings: dict[str, Any] = {k: getattr(cfg, k) for k in keys}
    settings["salt_sha256"] = hashlib.sha256(cfg.salt.encode()).hexdigest()[:16]  # the salt itself stays out
    return settings


def _check_settings(out: Path, state: dict, cfg: ScrapeConfig) -> None:
    now = _settings(cfg)
    before = state.setdefault("settings", now)
    changed = sorted(k for k in now if before.get(k) != now[k])
    if changed:
        raise ValueError(
            f"{out} was scraped with other settings ({', '.join(changed)} differ from {out / STATE_FILE}); "
            "resume with the same settings or scrape into a new directory"
        )


def _write_state(out: Path, state: dict) -> None:
    tmp = out / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, out / STATE_FILE)


COUNT_KINDS = ("dropped", "skipped", "comments_status")


@dataclass
class _Tally:
    """Counts by reason for one unit of work (a post, a page), merged only once the unit is finished."""

    dropped: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    comments_status: Counter[str] = field(default_factory=Counter)

    def add(self, other: "_Tally") -> None:
        for kind in COUNT_KINDS:
            getattr(self, kind).update(getattr(other, kind))


class _Run:
    """One scrape or refresh: the client, the writers, the counters, and checkpoints."""

    def __init__(self, cfg: ScrapeConfig, out: Path, state: dict | None = None) -> None:
        self.cfg = cfg
        self.out = out
        self.counter = RequestCounter()
        session = requests.Session()
        session.hooks["response"].append(self.counter)
        self.reddit = make_reddit(cfg, session)
        self.posts = ShardWriter(out, "posts", rows_per_shard=cfg.rows_per_shard)
        self.comments = ShardWriter(out, "comments", rows_per_shard=cfg.rows_per_shard)
        self.retries: Counter[str] = Counter()
        self.tally = _Tally()  # this run
        self.state = state if state is not None else {"listings": {}, "posts_done": []}
        self.totals = _Tally(**{k: Counter(self.state.get(k, {})) for k in COUNT_KINDS})  # every run so far
        self.done: set[str] = set(self.state.get("posts_done", []))
        self.since_checkpoint = 0
        self.stats = ScrapeStats()
        self.t0 = time.perf_counter()

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        return with_retries(fn, what=what, cfg=self.cfg.retry, counts=self.retries, reauth=reauth(self.reddit))

    def flush(self) -> None:
        self.posts.flush()
        self.comments.flush()

    def checkpoint(self) -> None:
        """Rows on disk first, then the state that says they are (with the counts of the same posts)."""
        self.flush()
        self.state["posts_done"] = sorted(self.done)
        for kind in COUNT_KINDS:
            self.state[kind] = dict(sorted(getattr(self.totals, kind).items()))
        _write_state(self.out, self.state)
        self.since_checkpoint = 0

    def finish_post(self, post_id: str, post: dict | None, comments: list[dict], tally: _Tally,
                    fetched: bool = True) -> None:
        """Stores one post's rows and counts and marks it done; `fetched`: it cost a thread request."""
        if post is not None:
            self.posts.add(post)
            self.stats.posts += 1
            for row in comments:
                self.comments.add(row)
            self.stats.comments += len(comments)
        self.done.add(post_id)
        self.tally.add(tally)
        self.totals.add(tally)
        if fetched:
            self.since_checkpoint += 1
            if self.since_checkpoint >= self.cfg.checkpoint_every:
                self.checkpoint()

    def finish(self) -> ScrapeStats:
        s = self.stats
        s.requests = self.counter.total
        s.status_counts = dict(self.counter.statuses)
        s.retries = dict(self.retries)
        s.dropped = dict(self.tally.dropped)
        s.skipped = dict(self.tally.skipped)
        s.comments_status = dict(self.tally.comments_status)
        s.seconds = time.perf_counter() - self.t0
        limits = self.reddit.auth.limits
        s.ratelimit = {k: v for k, v in limits.items() if v is not None} if limits else {}
        return s

    # rows ------------------------------------------------------------------------------------

    def post_row(self, submission: Any, retrieved: float, tally: _Tally, deleted: str = "deleted_post") -> dict | None:
        """The post's row, or None (counted in `tally` as `deleted`, or `malformed_post`)."""
        try:
            return post_from_json(as_json(submission), retrieved_utc=retrieved, salt=self.cfg.salt, source="praw")
        except DeletedContent:
            tally.dropped[deleted] += 1
        except (MalformedRecord, ValueError, TypeError):
            tally.dropped["malformed_post"] += 1
        return None

    def comment_row(self, comment: Any, retrieved: float, tally: _Tally, depth: int | None = None) -> dict | None:
        try:
            return comment_from_json(
                as_json(comment), retrieved_utc=retrieved, salt=self.cfg.salt, source="praw", depth=depth
            )
        except DeletedContent:
            tally.dropped["deleted_comment"] += 1
        except (MalformedRecord, ValueError, TypeError):
            tally.dropped["malformed_comment"] += 1
        return None


# ---------------------------------------------------------------------------------------------- scrape


def _refusal(err: BaseException) -> str:
    """The final answer's name (`not_found`, `forbidden`, `unavailable`); anything else is re-raised."""
    status = final_answer(err)
    if status is None:
        raise err
    return status


def _fetch_thread(run: _Run, post_id: str) -> Any:
    """The thread page (one request, retried): a Submission with its comment forest, or a refusal's name."""
    cfg = run.cfg

    def fetch() -> Any:
        submission = run.reddit.submission(id=post_id)
        submission.comment_sort = cfg.comment_sort
        if cfg.comment_limit is not None:
            submission.comment_limit = cfg.comment_limit
        submission.comments  # noqa: B018 - the request happens here
        return submission

    try:
        return run.call(fetch, f"thread {post_id}")
    except PrawcoreException as err:
        return _refusal(err)


def _thread_comments(run: _Run, submission: Any, tally: _Tally) -> list[dict]:
    """Comment rows down to `comment_depth`, expanding up to `replace_more` stubs (largest first).

    Depth is computed from the parent chain, not read: /api/morechildren answers carry no `depth` in older
    threads, and "continue this thread" pages count depth from their focus comment. Attributes are read
    from `vars()`: a missing one on a praw object would trigger a request of its own.
    """
    cfg = run.cfg
    depth_of: dict[str, int] = {}
    rows: dict[str, dict] = {}  # comment id -> row; morechildren answers can repeat comments
    stubs: list[tuple[int, int, MoreComments]] = []  # heap: largest `count` first, then order of appearance
    order = 0

    def depth(item: Any) -> int:
        parent = vars(item).get("parent_id") or ""
        if parent.startswith("t3_"):
            return 0
        if parent in depth_of:
            return depth_of[parent] + 1
        own = vars(item).get("depth")
        return int(own) if own is not None else cfg.comment_depth + 1  # unknown: treated as too deep

    def take(items: Any, retrieved: float) -> None:
        nonlocal order
        queue = list(items)
        while queue:
            item = queue.pop(0)
            d = depth(item)
            if isinstance(item, MoreComments):
                if d <= cfg.comment_depth:
                    order += 1
                    heappush(stubs, (-int(vars(item).get("count") or 0), order, item))
                continue
            depth_of[item.fullname] = d
            if d > cfg.comment_depth:
                continue
            if item.id in rows:
                tally.dropped["duplicate_comment"] += 1
                continue
            row = run.comment_row(item, retrieved, tally, depth=d)
            if row is not None and cfg.min_comment_score is not None and row["score"] < cfg.min_comment_score:
                tally.dropped["comment_score"] += 1
                row = None
            if row is not None:
                rows[item.id] = row
            if d < cfg.comment_depth:
                queue.extend(vars(item).get("_replies") or [])

    take(submission.comments, time.time())
    budget = cfg.replace_more
    while stubs and budget > 0:
        _, _, stub = heappop(stubs)
        children = vars(stub).get("children") or []
        if not children and (vars(stub).get("count") or vars(stub).get("parent_id", "").startswith("t3_")):
            tally.skipped["more_empty"] += 1  # a stub naming no comment: nothing to ask for
            continue
        budget -= 1
        stub.submission = submission
        try:
            items = run.call(lambda: stub.comments(update=True), f"more {submission.id} {vars(stub).get('id')}")
        except PrawcoreException as err:
            tally.skipped[f"more_{_refusal(err)}"] += 1
            continue
        except AssertionError:  # praw's own check: a "continue this thread" page without its comment
            tally.skipped["more_malformed"] += 1
            continue
        if len(items) == 0:
            tally.skipped["more_empty"] += 1
        take(items, time.time())
    return list(rows.values())


def _scrape_post(run: _Run, post_id: str, listed: dict | None, on_post: Callable[[str], None] | None) -> None:
    """One thread: the post is stored with its comments, or (refused thread) as listed with the reason."""
    tally = _Tally()
    comments: list[dict] = []
    result = _fetch_thread(run, post_id)
    if isinstance(result, str):  # 404/403/451: final; the listing's copy of the post is all there is
        status, post = result, listed
        tally.skipped[f"thread_{status}"] += 1
        log.info("thread %s: %s, stored without comments", post_id, status)
    else:
        status = "fetched"
        deleted = "post_deleted_after_listing" if listed is not None else "deleted_post"
        post = run.post_row(result, time.time(), tally, deleted=deleted)
        if post is not None:
            comments = _thread_comments(run, result, tally)
    if post is not None:
        post = post | {"comments_status": status}
        tally.comments_status[status] += 1
    run.finish_post(post_id, post, comments, tally)
    if post is not None and on_post is not None:
        on_post(post_id)


def _page(reddit: praw.Reddit, subreddit: str, cfg: ScrapeConfig, after: str | None, n: int) -> Any:
    """One listing page; `after` is the fullname of the last post of the previous page."""
    params: dict[str, Any] = {"limit": n}
    if after:
        params["after"] = after
    if cfg.listing in ("top", "controversial"):
        params["t"] = cfg.time_filter
    return reddit.get(f"r/{subreddit}/{cfg.listing}", params=params)


def _scrape_listing(run: _Run, subreddit: str, on_post: Callable[[str], None] | None) -> None:
    cfg = run.cfg
    key = f"{subreddit}/{cfg.listing}/{cfg.time_filter if cfg.listing in ('top', 'controversial') else '-'}"
    pos = run.state["listings"].setdefault(key, {"after": None, "seen": 0, "done": False})
    bar = tqdm(total=cfg.limit_per_subreddit, initial=pos["seen"], desc=f"r/{subreddit}", unit="post",
               disable=not cfg.progress, leave=False)
    while not pos["done"] and pos["seen"] < cfg.limit_per_subreddit:
        # 1. one listing page
        n = min(cfg.page_size, cfg.limit_per_subreddit - pos["seen"])
        try:
            page = run.call(lambda: _page(run.reddit, subreddit, cfg, pos["after"], n),
                            f"r/{subreddit}/{cfg.listing} after={pos['after']}")
        except PrawcoreException as err:  # private, banned, nonexistent subreddit: skip it, keep going
            status = _refusal(err)
            pos.update(done=True, refused=status)
            tally = _Tally()
            tally.skipped[f"listing_{status}"] += 1
            run.tally.add(tally)
            run.totals.add(tally)
            log.warning("r/%s/%s: %s, subreddit skipped", subreddit, cfg.listing, status)
            break
        for listed in page:
            # 2. one thread per new post
            if listed.id in run.done:
                run.stats.posts_skipped_done += 1
                continue
            tally = _Tally()
            row = run.post_row(listed, time.time(), tally)
            if row is not None and cfg.min_post_score is not None and row["score"] < cfg.min_post_score:
                tally.dropped["post_score"] += 1
                row = None
            if row is None:
                run.finish_post(listed.id, None, [], tally, fetched=False)
                continue
            _scrape_post(run, listed.id, row, on_post)
        pos["seen"] += len(page)
        bar.update(len(page))
        if not page.after or len(page) == 0 or page.after == pos["after"]:
            pos["done"] = True
        pos["after"] = page.after
        run.checkpoint()  # 3. after each page (and every `checkpoint_every` threads)
    bar.close()


def scrape(cfg: ScrapeConfig, out_dir: str | Path, on_post: Callable[[str], None] | None = None) -> ScrapeStats:
    """Scrape `cfg.post_ids`, else `cfg.subreddits`, into the records directory `out_dir`, resuming from its state.

    `on_post(post_id)` is called after each stored post (progress hooks; tests interrupt through it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = _read_state(out)
    _check_settings(out, state, cfg)
    run = _Run(cfg, out, state)
    try:
        if cfg.post_ids:
            todo = [i for i in cfg.post_ids if i not in run.done]
            run.stats.posts_skipped_done += len(cfg.post_ids) - len(todo)
            for post_id in tqdm(todo, desc="threads", unit="thread", disable=not cfg.progress, leave=False):
                _scrape_post(run, post_id, None, on_post)
        else:
            for subreddit in cfg.subreddits:
                _scrape_listing(run, subreddit, on_post)
    finally:
        run.checkpoint()  # an interrupted run keeps everything finished so far
    return run.finish()


def refresh(cfg: ScrapeConfig, out_dir: str | Path) -> ScrapeStats:
    """Append new score snapshots of every stored post and comment (`/api/info`, 100 fullnames a request).

    Items deleted since their first read are counted as `deleted_*` and keep their earlier snapshot. A new
    post snapshot keeps the `comments_status` of the stored one (the latest snapshot is the one kept).
    """
    out = Path(out_dir)
    posts, comments = load_records(out, "posts"), load_records(out, "comments")
    if len(posts) == 0:
        raise FileNotFoundError(f"{out}: no posts to refresh (run a scrape into it first)")
    run = _Run(cfg, out)
    depth = dict(zip(comments["id"], comments["depth"]))  # /api/info omits a comment's depth
    status = dict(zip(posts["id"], posts["comments_status"]))
    names = [f"t3_{i}" for i in posts["id"]] + [f"t1_{i}" for i in comments["id"]]
    batches = [names[i : i + INFO_BATCH] for i in range(0, len(names), INFO_BATCH)]
    try:
        for batch in tqdm(batches, desc="refresh", unit="batch", disable=not cfg.progress, leave=False):
            things = run.call(lambda: list(run.reddit.info(fullnames=batch)), f"info {batch[0]}..")
            retrieved = time.time()
            returned = set()
            for thing in things:
                returned.add(thing.fullname)
                if thing.fullname.startswith("t3_"):
                    row = run.post_row(thing, retrieved, run.tally)
                    if row is not None:
                        run.posts.add(row | {"comments_status": status.get(thing.id) or "not_requested"})
                        run.stats.posts += 1
                else:
                    row = run.comment_row(thing, retrieved, run.tally, depth=depth.get(thing.id))
                    if row is not None:
                        run.comments.add(row)
                        run.stats.comments += 1
            missing = len(set(batch) - returned)
            if missing:
                run.tally.dropped["not_returned"] += missing
    finally:
        run.flush()
    return run.finish()
