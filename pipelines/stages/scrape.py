"""`python -m pipelines scrape` and `python -m pipelines sim-reddit`.

scrape writes `runs/<name>/scrape/records/{posts,comments}/part-*.parquet` from one source:
- `sim`: generates the simulated world, serves it on 127.0.0.1 and scrapes it with the real praw client,
  exactly as reddit.com would be scraped (only the URLs and the throwaway credentials differ);
- `reddit`: reddit.com with credentials from the environment (`REDDIT_CLIENT_ID`, `REDDIT_CLIENT_SECRET`,
  `REDDIT_USER_AGENT`) or a praw.ini site (`REDDIT_OAUTH_URL` / `REDDIT_URL` name another server);
- `dumps`: Pushshift / Arctic-Shift files.
The stage is resumable: the scraper keeps a progress state beside its shards.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from data.empty_output import EmptyOutput
from data.shards import shard_paths
from data.sim.server import SimRedditServer
from data.sources.dumps import ingest_dumps
from data.sources.reddit_api import refresh, scrape
from data.sources.reddit_client import ENV_AGENT, ENV_ID, ENV_SECRET, MissingCredentials
from pipelines.stages import Context, register, sim_world

SIM_CLIENT_ID = "sim-client"
SIM_CLIENT_SECRET = "sim-secret-not-a-real-one"


@contextlib.contextmanager
def _sim_credentials() -> Iterator[None]:
    """Throwaway credentials for the local server, set only for the scrape and restored after."""
    saved = {k: os.environ.get(k) for k in (ENV_ID, ENV_SECRET, ENV_AGENT)}
    os.environ.update({ENV_ID: SIM_CLIENT_ID, ENV_SECRET: SIM_CLIENT_SECRET, ENV_AGENT: "python:upvote-rlhf-sim:0.1"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@register("scrape", "Scrape posts and comments with scores (source: sim | reddit | dumps) into Parquet shards.",
          resumable=True, keep_on_force=True)
def scrape_stage(ctx: Context) -> dict:
    cfg = ctx.cfg
    records = ctx.out / "records"
    source = cfg.scrape.source
    if source == "dumps":
        if cfg.scrape.dumps is None:
            raise ValueError("scrape.source=dumps needs a scrape.dumps section with `paths` (files or globs)")
        stats = ingest_dumps(cfg.scrape.dumps, records)
        print(stats)
        summary = stats.to_dict()
        metrics = {f"scrape/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}
        return metrics | {f"scrape/dropped/{k}": v for k, v in summary.get("dropped", {}).items()}

    job = refresh if cfg.scrape.refresh else scrape
    if source == "sim":
        world = sim_world(cfg, progress=True)
        server_cfg = cfg.scrape.server.model_copy(update={"client_id": SIM_CLIENT_ID, "client_secret": SIM_CLIENT_SECRET})
        with SimRedditServer(world, server_cfg) as server, _sim_credentials():
            # prawcore paces requests over the server's window, which the sim config knows exactly.
            reddit_cfg = cfg.scrape.reddit.model_copy(update={
                "oauth_url": server.base_url, "reddit_url": server.base_url,
                "ratelimit_window_s": max(1, int(server_cfg.window_seconds))})
            print(f"[scrape] simulated Reddit: {len(world.posts)} posts at {server.base_url}")
            stats = job(reddit_cfg, records)
    else:
        try:
            stats = job(cfg.scrape.reddit, records)
        except MissingCredentials as err:
            print(f"[scrape] {err}", file=sys.stderr)
            raise SystemExit(2) from None
    summary = stats.to_dict()
    print(f"[scrape] {summary['posts']} posts, {summary['comments']} comments, {summary['requests']} requests, "
          f"{summary['items_per_request']:.1f} items/request, dropped {summary['dropped']}, "
          f"skipped {summary['skipped']}")
    metrics = {f"scrape/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}
    for group in ("dropped", "skipped", "retries", "comments_status"):
        metrics.update({f"scrape/{group}/{k}": v for k, v in summary[group].items()})
    refuse_empty(records, {**summary["skipped"], **summary["dropped"]},
                 "scrape.reddit.subreddits, listing and time_filter (a banned or private subreddit answers 404/403), "
                 "min_post_score, or scrape.reddit.post_ids")
    return metrics


def refuse_empty(records: Path, counts: dict[str, int], settings: str) -> None:
    """No post stored at all is an error naming what refused or dropped them (the progress state is kept, so
    a corrected rerun resumes); otherwise every later stage would fail on an empty directory."""
    if shard_paths(records, "posts"):
        return
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v) or "none counted"
    raise EmptyOutput(f"scrape stored 0 posts in {records} (skipped or dropped: {reasons}); check {settings}")


@register("sim-reddit", "Serve the simulated Reddit on 127.0.0.1 (Reddit's JSON API) until Ctrl-C.", tracked=False)
def sim_reddit(ctx: Context) -> dict:
    world = sim_world(ctx.cfg, progress=True)
    server_cfg = ctx.cfg.scrape.server
    if server_cfg.port == 0:
        server_cfg = server_cfg.model_copy(update={"port": 8765})
    server = SimRedditServer(world, server_cfg).start()
    print(f"simulated Reddit: {len(world.posts)} posts at {server.base_url} (any client id/secret; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return {}
