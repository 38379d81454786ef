"""The simulated Reddit server read by the real praw 8 client, plus its headers, limits and faults."""

from __future__ import annotations

import json

import praw
import prawcore
import pytest
import requests

from data.sim.server import FaultConfig, ServerConfig, SimRedditServer
from data.sim.world import SimWorld, WorldConfig

RATE_HEADERS = ("x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset")


@pytest.fixture(scope="module")
def world() -> SimWorld:
    return SimWorld.generate(WorldConfig(seed=5, posts_per_subreddit=160))


def make_reddit(server: SimRedditServer) -> praw.Reddit:
    base = server.base_url
    return praw.Reddit(client_id="sim-id", client_secret="sim-secret", user_agent="upvote-rlhf tests",
                       oauth_url=base, reddit_url=base, short_url=base, check_for_updates=False,
                       check_for_async=False)


def token(server: SimRedditServer) -> str:
    r = requests.post(server.base_url + "/api/v1/access_token", auth=("id", "secret"),
                      data={"grant_type": "client_credentials"}, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and body["scope"]
    return body["access_token"]


def api_get(server: SimRedditServer, path: str, tok: str, timeout: float = 5, **params: str) -> requests.Response:
    return requests.get(server.base_url + path, params=params, headers={"Authorization": f"bearer {tok}"},
                        timeout=timeout)


def test_praw_lists_a_subreddit_up_to_the_cap(world: SimWorld) -> None:
    with SimRedditServer(world, ServerConfig(listing_cap=130, requests_per_window=1000, score_fuzz=0.0)) as server:
        reddit = make_reddit(server)
        top = list(reddit.subreddit("relationships").top(time_filter="all", limit=None))
        expected = sorted((p for p in world.posts if p["subreddit"] == "relationships"),
                          key=lambda p: (-p["score"], -p["created_utc"]))[:130]
        assert [s.id for s in top] == [p["id"] for p in expected]  # 2 pages of 100 + 30, then the cap
        assert top[0].title == expected[0]["title"] and top[0].score == expected[0]["score"]
        new = list(reddit.subreddit("tifu").new(limit=150))
        assert len(new) == 130 and all(a.created_utc >= b.created_utc for a, b in zip(new, new[1:]))
        assert server.stats()["endpoint/listing"] == 4
        week = list(reddit.subreddit("tifu").top(time_filter="week", limit=None))
        assert 0 < len(week) < 130
        assert all(s.created_utc >= world.config.now_utc - 7 * 86400 for s in week)


def test_praw_reads_comments_with_replace_more(world: SimWorld) -> None:
    post = max(world.posts, key=lambda p: p["num_comments"])
    truth = {c["id"] for c in world.comments.values() if c["link_id"] == post["name"]}
    with SimRedditServer(world, ServerConfig(requests_per_window=1000, morechildren_max=7)) as server:
        reddit = make_reddit(server)
        submission = reddit.submission(id=post["id"])
        submission.comment_limit = 6
        first = list(submission.comments)
        assert isinstance(first[-1], praw.models.MoreComments)
        submission.comments.replace_more(limit=None)
        got = submission.comments.list()
        assert {c.id for c in got} == truth
        by_id = {c.id: c for c in got}
        for c in got:
            assert c.body == world.comments[c.id]["body"] and c.depth == world.comments[c.id]["depth"]
            assert c.parent_id == world.comments[c.id]["parent_id"]
        assert any(c.is_submitter for c in got) or not any(world.comments[i]["is_submitter"] for i in truth)
        assert server.stats()["endpoint/morechildren"] >= 2  # morechildren_max forces continuation `more`s
        # A depth limit gives "continue this thread" stubs that praw follows.
        deep = reddit.submission(id=post["id"])
        deep.add_fetch_param("depth", "1")
        deep.comments.replace_more(limit=None)
        assert {c.id for c in deep.comments.list()} == truth
        assert by_id  # keep a reference: comments stay attached to their submission


def test_praw_info_and_sort_orders(world: SimWorld) -> None:
    post = max(world.posts, key=lambda p: p["num_comments"])
    comment_ids = world.top_level(post["id"])[:2]
    with SimRedditServer(world, ServerConfig(requests_per_window=1000, score_fuzz=0.0)) as server:
        reddit = make_reddit(server)
        things = list(reddit.info(fullnames=[post["name"], *[f"t1_{c}" for c in comment_ids]]))
        assert [t.fullname for t in things] == [post["name"], *[f"t1_{c}" for c in comment_ids]]
        assert things[0].title == post["title"] and things[1].body == world.comments[comment_ids[0]]["body"]
        submission = reddit.submission(id=post["id"])
        submission.comment_sort = "new"
        tops = [c for c in submission.comments if not c.stickied]
        assert all(a.created_utc >= b.created_utc for a, b in zip(tops, tops[1:]))
        about = reddit.subreddit("AskReddit")
        assert about.subscribers > 0 and about.display_name == "AskReddit"


def test_headers_auth_and_rate_limit(world: SimWorld) -> None:
    with SimRedditServer(world, ServerConfig(requests_per_window=4, window_seconds=120)) as server:
        anonymous = requests.get(server.base_url + "/r/tifu/new", timeout=5)
        assert anonymous.status_code == 401 and all(h in anonymous.headers for h in RATE_HEADERS)
        assert 'error="invalid_token"' in anonymous.headers["www-authenticate"]
        tok = token(server)
        statuses = []
        for _ in range(4):
            r = api_get(server, "/r/tifu/new", tok, limit="5")
            statuses.append(r.status_code)
            assert all(h in r.headers for h in RATE_HEADERS)
            float(r.headers["x-ratelimit-remaining"]), int(r.headers["x-ratelimit-used"])
            assert 0 < int(r.headers["x-ratelimit-reset"]) <= 120
        assert statuses == [200, 200, 200, 429]
        assert float(r.headers["x-ratelimit-remaining"]) == 0.0
        stats = server.stats()
        assert stats["total"] == 5 and stats["rate_limited"] == 1 and stats["status/429"] == 1
        assert stats["endpoint/listing"] == 5 and stats["tokens_issued"] == 1
        bad = requests.post(server.base_url + "/api/v1/access_token", data={"grant_type": "client_credentials"},
                            timeout=5)
        assert bad.status_code == 401
    locked = ServerConfig(client_id="right", client_secret="s")
    with SimRedditServer(world, locked) as server:
        wrong = requests.post(server.base_url + "/api/v1/access_token", auth=("wrong", "s"),
                              data={"grant_type": "client_credentials"}, timeout=5)
        assert wrong.status_code == 401


def test_scheduled_faults(world: SimWorld) -> None:
    faults = FaultConfig(schedule={1: "500", 2: "503", 3: "429", 4: "truncated", 5: "delay", 6: "expired_token"},
                         delay_seconds=1.0)
    with SimRedditServer(world, ServerConfig(requests_per_window=1000, faults=faults)) as server:
        tok = token(server)
        assert api_get(server, "/r/tifu/hot", tok).status_code == 500
        assert api_get(server, "/r/tifu/hot", tok).status_code == 503
        r429 = api_get(server, "/r/tifu/hot", tok)
        assert r429.status_code == 429 and all(h in r429.headers for h in RATE_HEADERS)
        cut = api_get(server, "/r/tifu/hot", tok)
        assert cut.status_code == 200
        with pytest.raises(ValueError):
            json.loads(cut.text)
        with pytest.raises(requests.exceptions.Timeout):
            api_get(server, "/r/tifu/hot", tok, timeout=0.3)
        revoked = api_get(server, "/r/tifu/hot", tok)
        assert revoked.status_code == 401 and 'error="invalid_token"' in revoked.headers["www-authenticate"]
        assert api_get(server, "/r/tifu/hot", tok).status_code == 401  # the token stays revoked
        assert api_get(server, "/r/tifu/hot", token(server)).status_code == 200
        stats = server.stats()
        assert all(stats[f"fault/{k}"] == 1 for k in ("500", "503", "429", "truncated", "delay", "expired_token"))


def test_random_faults_are_deterministic_and_praw_recovers_from_a_revoked_token(world: SimWorld) -> None:
    def run() -> list[int]:
        cfg = ServerConfig(requests_per_window=1000, faults=FaultConfig(seed=7, rates={"500": 0.3, "503": 0.2}))
        with SimRedditServer(world, cfg) as server:
            tok = token(server)
            return [api_get(server, "/r/tifu/new", tok).status_code for _ in range(20)]

    first = run()
    assert first == run() and {200, 500, 503} <= set(first)
    with SimRedditServer(world, ServerConfig(requests_per_window=1000,
                                             faults=FaultConfig(schedule={2: "expired_token"}))) as server:
        reddit = make_reddit(server)
        posts = list(reddit.subreddit("tifu").new(limit=250))  # the 2nd page hits the revoked token
        assert len(posts) == 160
        assert server.stats()["tokens_issued"] == 2
    with SimRedditServer(world, ServerConfig(faults=FaultConfig(schedule={1: "429"}))) as server:
        with pytest.raises(prawcore.exceptions.TooManyRequests):
            next(iter(make_reddit(server).subreddit("tifu").new(limit=5)))


def test_scores_are_fuzzed_a_little_per_read(world: SimWorld) -> None:
    post = max(world.posts, key=lambda p: p["score"])
    with SimRedditServer(world, ServerConfig(requests_per_window=1000, score_fuzz=0.02)) as server:
        tok = token(server)
        reads = [api_get(server, "/api/info", tok, id=post["name"]).json()["data"]["children"][0]["data"]["score"]
                 for _ in range(8)]
    assert len(set(reads)) > 1
    assert all(abs(r - post["score"]) <= 0.1 * post["score"] + 1 for r in reads)
