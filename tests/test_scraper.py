"""praw scraper against the simulated Reddit over real HTTP: resume, faults, budget, refresh, secrets."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data.shards import load_records, shard_paths
from data.sim.server import FaultConfig, ServerConfig, SimRedditServer
from data.sim.world import SimWorld, WorldConfig
from data.sources.reddit_api import STATE_FILE, ScrapeConfig, refresh, scrape
from data.sources.reddit_client import MissingCredentials
from data.sources.retry import RetriesExhausted

SECRET = "s3cr3t-do-not-log-7f2a"
SUBS = {"tifu": 1.0, "relationships": 0.6}
WORLD_CFG = WorldConfig(seed=3, subreddits=SUBS, posts_per_subreddit=12, top_level_comments=(3, 8))


@pytest.fixture(scope="module")
def world() -> SimWorld:
    return SimWorld.generate(WORLD_CFG)


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDDIT_CLIENT_ID", "sim-client")
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("REDDIT_USER_AGENT", "python:upvote-rlhf-tests:0.1")


def server_cfg(**kw) -> ServerConfig:
    return ServerConfig(**({"score_fuzz": 0.0, "client_id": "sim-client", "client_secret": SECRET} | kw))


def scrape_cfg(base_url: str, **kw) -> ScrapeConfig:
    base = dict(subreddits=list(SUBS), oauth_url=base_url, reddit_url=base_url, page_size=7, checkpoint_every=4,
                rows_per_shard=40, progress=False, request_timeout_s=1,
                retry={"max_attempts": 6, "base_delay_s": 0.01, "max_delay_s": 0.05})
    return ScrapeConfig(**(base | kw))


def snapshot(directory: Path) -> dict[str, list[dict]]:
    """Records without the read time, sorted by id: what must match between two scrapes."""
    out = {}
    for kind in ("posts", "comments"):
        rows = [{k: v for k, v in r.items() if k != "retrieved_utc"} for r in load_records(directory, kind)]
        out[kind] = sorted(rows, key=lambda r: r["id"])
    return out


def raw_ids(directory: Path, kind: str) -> list[str]:
    return [i for p in shard_paths(directory, kind) for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]


@pytest.fixture(scope="module")
def reference(world: SimWorld, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """An uninterrupted, fault-free scrape of the whole world."""
    out = tmp_path_factory.mktemp("reference")
    mp = pytest.MonkeyPatch()
    mp.setenv("REDDIT_CLIENT_ID", "sim-client")
    mp.setenv("REDDIT_CLIENT_SECRET", SECRET)
    with SimRedditServer(world, server_cfg()) as srv:
        stats = scrape(scrape_cfg(srv.base_url), out)
    mp.undo()
    assert stats.posts > 20 and stats.comments > 60 and not stats.retries
    assert stats.requests == 1 + 2 * 2 + stats.posts  # one token, 2 pages per subreddit, one thread per post
    return snapshot(out)


def test_reference_is_complete(world: SimWorld, reference: dict[str, list[dict]]) -> None:
    alive = [p for p in world.posts if p["author"] != "[deleted]" and not p.get("removed_by_category")
             and p["selftext"] not in ("[deleted]", "[removed]")]
    assert {r["id"] for r in reference["posts"]} == {p["id"] for p in alive}
    for post in alive:
        top = {c for c in world.top_level(post["id"]) if world.comments[c]["author"] != "[deleted]"}
        assert {r["id"] for r in reference["comments"] if r["post_id"] == post["id"]} == top
    assert all(r["depth"] == 0 and r["parent_id"].startswith("t3_") for r in reference["comments"])
    assert all(len(r["author"]) == 16 for r in reference["posts"])  # salted hashes, not names


def test_interrupted_then_resumed_equals_uninterrupted(world: SimWorld, tmp_path: Path,
                                                       reference: dict[str, list[dict]]) -> None:
    class Stop(Exception):
        pass

    seen: list[str] = []

    def stop_after_17(post_id: str) -> None:
        seen.append(post_id)
        if len(seen) == 17:
            raise Stop

    with SimRedditServer(world, server_cfg()) as srv:
        with pytest.raises(Stop):
            scrape(scrape_cfg(srv.base_url), tmp_path, on_post=stop_after_17)
        assert (tmp_path / STATE_FILE).exists()
        assert len(load_records(tmp_path, "posts")) == 17  # everything finished before the stop is on disk
        stats = scrape(scrape_cfg(srv.base_url), tmp_path)
    assert stats.posts == len(reference["posts"]) - 17 and stats.posts_skipped_done >= 1
    assert snapshot(tmp_path) == reference
    assert len(raw_ids(tmp_path, "posts")) == len(set(raw_ids(tmp_path, "posts")))  # no post fetched twice
    with pytest.raises(ValueError, match="comment_depth, salt_sha256"):  # resuming must not mix row kinds
        scrape(scrape_cfg("http://127.0.0.1:9", comment_depth=2, salt="other"), tmp_path)


def test_killed_process_resumes(world: SimWorld, tmp_path: Path, reference: dict[str, list[dict]]) -> None:
    """SIGKILL mid-scrape (no cleanup at all): the resumed run refetches what was not checkpointed."""
    with SimRedditServer(world, server_cfg()) as srv:
        code = textwrap.dedent(f"""
            import os, signal
            from data.sources.reddit_api import ScrapeConfig, scrape
            cfg = ScrapeConfig.model_validate_json({scrape_cfg(srv.base_url).model_dump_json()!r})
            n = []
            def hook(post_id):
                n.append(post_id)
                if len(n) == 10:
                    os.kill(os.getpid(), signal.SIGKILL)
            scrape(cfg, {str(tmp_path)!r}, on_post=hook)
        """)
        proc = subprocess.run([sys.executable, "-c", code], env=os.environ | {"OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == -9, proc.stderr[-2000:]
        partial = len(load_records(tmp_path, "posts"))
        assert 10 - 3 <= partial <= 10  # checkpoint_every=4: at most the last 3 finished posts were lost
        scrape(scrape_cfg(srv.base_url), tmp_path)
    assert snapshot(tmp_path) == reference


def test_faults_still_give_complete_dataset(world: SimWorld, tmp_path: Path, reference: dict[str, list[dict]],
                                            caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture) -> None:
    schedule = {2: "429", 4: "500", 6: "503", 9: "truncated", 12: "expired_token", 15: "delay", 17: "truncated",
                20: "500", 21: "500", 22: "500",  # three in a row outlast prawcore's own two retries
                25: "expired_token", 26: "expired_token", 27: "expired_token"}
    faults = FaultConfig(schedule=schedule, delay_seconds=1.6)
    caplog.set_level(logging.DEBUG)
    with SimRedditServer(world, server_cfg(faults=faults)) as srv:
        stats = scrape(scrape_cfg(srv.base_url), tmp_path)
        served = srv.stats()
    assert snapshot(tmp_path) == reference
    for kind in ("429", "500", "503", "truncated", "expired_token", "delay"):
        assert served[f"fault/{kind}"] >= 1, kind
    assert stats.retries["rate_limited"] == 1 and stats.retries["bad_json"] == 2
    assert stats.retries["server_error"] >= 1
    assert stats.retries["invalid_token"] == 1  # prawcore gave up after 3 x 401; we re-authenticated
    assert stats.status_counts["401"] == 4 and served["tokens_issued"] == 5  # a new token after each 401
    # the client secret appears in no log record, no output and no saved file
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text and SECRET not in out + err
    assert "Retrying" in caplog.text or "retry" in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_rate_limit_budget_is_obeyed(world: SimWorld, tmp_path: Path) -> None:
    cfg_server = server_cfg(requests_per_window=12, window_seconds=1.0)
    with SimRedditServer(world, cfg_server) as srv:
        stats = scrape(scrape_cfg(srv.base_url, subreddits=["relationships"], ratelimit_window_s=1), tmp_path)
        served = srv.stats()
    assert stats.posts >= 10
    assert served.get("rate_limited", 0) <= 1 and stats.seconds > 1.0  # paced by the headers, not by 429s


def test_dead_server_gives_up_with_clear_error(world: SimWorld, tmp_path: Path) -> None:
    with SimRedditServer(world, server_cfg(faults=FaultConfig(rates={"429": 1.0}))) as srv:
        with pytest.raises(RetriesExhausted, match="rerun to resume"):
            scrape(scrape_cfg(srv.base_url, retry={"max_attempts": 3, "base_delay_s": 0.0, "max_delay_s": 0.0}),
                   tmp_path)
    assert (tmp_path / STATE_FILE).exists()


def test_refresh_appends_new_score_snapshots(world: SimWorld, tmp_path: Path) -> None:
    with SimRedditServer(world, server_cfg()) as srv:
        cfg = scrape_cfg(srv.base_url, subreddits=["tifu"])
        scrape(cfg, tmp_path)
        before = {r["id"]: r for r in load_records(tmp_path, "posts")}
        comments_before = {r["id"]: r for r in load_records(tmp_path, "comments")}
        bumped = next(iter(before))
        world.posts_by_id[bumped]["score"] += 1000
        try:
            stats = refresh(cfg, tmp_path)
        finally:
            world.posts_by_id[bumped]["score"] -= 1000
    after = {r["id"]: r for r in load_records(tmp_path, "posts")}
    assert after[bumped]["score"] == before[bumped]["score"] + 1000
    assert after[bumped]["retrieved_utc"] > before[bumped]["retrieved_utc"]
    assert stats.posts == len(before) and stats.comments == len(comments_before)
    assert stats.requests == 1 + -(-(len(before) + len(comments_before)) // 100)  # token + 100 fullnames each
    comments_after = {r["id"]: r for r in load_records(tmp_path, "comments")}
    assert {k: v["depth"] for k, v in comments_after.items()} == {k: v["depth"] for k, v in comments_before.items()}
    assert len(raw_ids(tmp_path, "posts")) == 2 * len(before)  # a second snapshot of each, not a rewrite


def test_replace_more_and_depth(world: SimWorld, tmp_path: Path) -> None:
    with SimRedditServer(world, server_cfg()) as srv:
        full = scrape(scrape_cfg(srv.base_url, subreddits=["tifu"], comment_depth=1), tmp_path / "full")
        cut = scrape(scrape_cfg(srv.base_url, subreddits=["tifu"], comment_limit=2, replace_more=3),
                     tmp_path / "cut")
    deep = load_records(tmp_path / "full", "comments")
    assert set(deep["depth"]) == {0, 1} and full.comments > cut.comments
    top_full = {r["id"] for r in deep if r["depth"] == 0}
    assert set(load_records(tmp_path / "cut", "comments")["id"]) == top_full  # stubs expanded via morechildren
    assert cut.requests > full.requests - 1  # the expansions cost requests


def test_missing_credentials_say_how_to_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REDDIT_CLIENT_ID")
    monkeypatch.delenv("REDDIT_CLIENT_SECRET")
    with pytest.raises(MissingCredentials, match="REDDIT_CLIENT_ID.*make scrape SOURCE=sim"):
        scrape(ScrapeConfig(progress=False), tmp_path)
    monkeypatch.chdir(tmp_path)  # no praw.ini here
    with pytest.raises(MissingCredentials, match="praw.ini site 'nosuch'"):
        scrape(ScrapeConfig(praw_site="nosuch", progress=False), tmp_path)
    with pytest.raises(ValueError, match="client_secret"):
        ScrapeConfig(client_secret="x")  # credentials are not config fields
