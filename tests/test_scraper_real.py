"""The praw scraper on recorded reddit.com responses (tests/fixtures/reddit_cassettes, replayed over HTTP by
tests/reddit_replay.py to the real praw client): every listed post stored, threads reddit.com refuses
counted and never fatal, scores equal to the recording, `more` expansion, and the same dataset after
injected faults, an exception or a SIGKILL. Expected values are read from the cassettes, not written here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data.card import render_markdown, scrape_counts
from data.records import DeletedContent, comment_from_json, post_from_json
from data.shards import load_records, shard_paths
from data.sources.reddit_api import STATE_FILE, ScrapeConfig, refresh, scrape
from tests.reddit_replay import Fault, RedditReplay

REPO = Path(__file__).resolve().parents[1]
CASSETTES = Path(__file__).parent / "fixtures" / "reddit_cassettes"
LISTINGS = {name: CASSETTES / f"TestSubredditListings.test_{name}.json" for name in ("new", "hot", "controversial")}
N49RW = CASSETTES / "TestCommentForest.test_replace__all_large.trimmed.json"
FO7P5B = CASSETTES / "TestPollData.test_get_attrs.json"
SALT = "replay-salt"
COUNTS = ("skipped", "dropped", "comments_status")


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDDIT_CLIENT_ID", "replay-client")
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", "replay-secret")
    monkeypatch.setenv("REDDIT_USER_AGENT", "python:upvote-rlhf-replay-tests:0.1")
    monkeypatch.delenv("REDDIT_OAUTH_URL", raising=False)
    monkeypatch.delenv("REDDIT_URL", raising=False)


def config(replay: RedditReplay, **kw) -> ScrapeConfig:
    base = dict(oauth_url=replay.base_url, reddit_url=replay.base_url, subreddits=["AskReddit"], listing="new",
                checkpoint_every=7, rows_per_shard=60, progress=False, salt=SALT, request_timeout_s=2,
                retry={"max_attempts": 5, "base_delay_s": 0.01, "max_delay_s": 0.05})
    return ScrapeConfig(**(base | kw))


# ------------------------------------------------------------------ the recording, read directly


def recorded(cassette: Path, uri_part: str) -> object:
    """The JSON body of the first recorded response whose request URI contains `uri_part`."""
    for it in json.loads(cassette.read_text())["interactions"]:
        if uri_part in it["request"]["uri"]:
            return json.loads(it["response"]["body"]["string"])
    raise KeyError(uri_part)


def listing_posts(name: str) -> list[dict]:
    return [c["data"] for c in recorded(LISTINGS[name], "/r/askreddit/")["data"]["children"]]


def kept(post: dict) -> bool:
    """Whether the shared converter keeps the post (its deletion rule is data.records', not restated here)."""
    try:
        post_from_json(post, retrieved_utc=0.0, salt=SALT, source="check")
        return True
    except DeletedContent:
        return False


def comment_tree(children: list[dict], depth: int = 0):
    """(depth, comment data) for every comment of a recorded tree, parents first."""
    for child in children:
        if child["kind"] != "t1":
            continue
        yield depth, child["data"]
        replies = child["data"].get("replies")
        if replies:
            yield from comment_tree(replies["data"]["children"], depth + 1)


def split_deleted(comments: list[tuple[int, dict]]) -> tuple[dict[str, dict], int]:
    """{id: data} of the comments the converter keeps, and how many it drops as deleted."""
    keep, deleted = {}, 0
    for depth, data in comments:
        try:
            comment_from_json(data, retrieved_utc=0.0, salt=SALT, source="check", depth=depth)
            keep[data["id"]] = data
        except DeletedContent:
            deleted += 1
    return keep, deleted


# ------------------------------------------------------------------ what was stored


def rows(out: Path, kind: str) -> dict[str, dict]:
    return {r["id"]: r for r in load_records(out, kind)}


def snapshot(out: Path) -> dict[str, list[dict]]:
    """Records without the read time, sorted by id: what must match between two scrapes."""
    return {kind: sorted(({k: v for k, v in r.items() if k != "retrieved_utc"} for r in load_records(out, kind)),
                         key=lambda r: r["id"]) for kind in ("posts", "comments")}


def state_counts(out: Path) -> dict:
    state = json.loads((out / STATE_FILE).read_text())
    return {k: state.get(k, {}) for k in COUNTS}


def raw_ids(out: Path, kind: str) -> list[str]:
    return [i for p in shard_paths(out, kind) for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("listing", ["new", "hot", "controversial"])
def test_every_listed_post_is_stored_though_reddit_refuses_its_thread(listing: str, tmp_path: Path) -> None:
    """r/askreddit's recorded listings (100 posts each); their threads were never recorded, so the replay
    answers 404 like reddit.com for a removed thread: each post is stored with comments_status not_found."""
    listed = listing_posts(listing)
    alive = [p for p in listed if kept(p)]
    with RedditReplay.from_files([LISTINGS[listing]]) as replay:
        stats = scrape(config(replay, listing=listing, time_filter="all"), tmp_path)
        assert replay.counters["endpoint/thread"] == len(alive)  # one thread request per kept post
    posts = rows(tmp_path, "posts")
    assert set(posts) == {p["id"] for p in alive} and len(alive) >= 88
    for p in alive:
        row = posts[p["id"]]
        assert (row["score"], row["title"], row["num_comments"]) == (p["score"], p["title"], p["num_comments"])
        assert row["comments_status"] == "not_found" and row["upvote_ratio"] is None  # 2016: no upvote_ratio
    assert stats.posts == len(alive) and stats.comments == 0 and len(load_records(tmp_path, "comments")) == 0
    assert stats.skipped == {"thread_not_found": len(alive)}
    assert stats.comments_status == {"not_found": len(alive)}
    assert stats.dropped.get("deleted_post", 0) == len(listed) - len(alive)
    # the progress file holds the same counts, and the data card shows them
    assert state_counts(tmp_path) == {k: getattr(stats, k) for k in COUNTS}
    card = {"records": {}, "splits": {}, "split_rule": {}, "drops": {}, "pairs_by_subreddit_strategy": {},
            "score_quantiles": {}, "gold_agreement": {}, "bayes_ceiling": {}, "scrape": scrape_counts(tmp_path)}
    assert f"| skipped | thread_not_found | {len(alive)} |" in render_markdown(card)


def test_thread_comments_and_scores_equal_the_recording(tmp_path: Path) -> None:
    """Thread fo7p5b (2020) by id, down to depth 2: exactly the recorded comments, with their scores."""
    page = recorded(FO7P5B, "/comments/fo7p5b/")
    post = page[0]["data"]["children"][0]["data"]
    expected, deleted = split_deleted([(d, c) for d, c in comment_tree(page[1]["data"]["children"]) if d <= 2])
    with RedditReplay.from_files([FO7P5B]) as replay:
        stats = scrape(config(replay, post_ids=["t3_fo7p5b"], comment_depth=2), tmp_path)
        assert replay.counters["endpoint/more"] == 0  # replace_more=0: no expansion requests
    posts, comments = rows(tmp_path, "posts"), rows(tmp_path, "comments")
    assert list(posts) == ["fo7p5b"] and posts["fo7p5b"]["comments_status"] == "fetched"
    assert (posts["fo7p5b"]["score"], posts["fo7p5b"]["upvote_ratio"]) == (post["score"], post["upvote_ratio"])
    assert set(comments) == set(expected) and len(expected) > 200
    assert {i: r["score"] for i, r in comments.items()} == {i: c["score"] for i, c in expected.items()}
    assert {i: r["depth"] for i, r in comments.items()} == {i: c["depth"] for i, c in expected.items()}
    assert {i: r["body"] for i, r in comments.items()} == {i: c["body"] for i, c in expected.items()}
    assert stats.dropped.get("deleted_comment", 0) == deleted and stats.comments == len(expected)


def test_more_expansion_follows_the_recorded_chain(tmp_path: Path) -> None:
    """Thread n49rw (2016), top-level comments, 5 `more` stubs expanded: the comments of the thread page and of
    exactly the /api/morechildren answers served (all from the recording), with their recorded scores."""
    page = recorded(N49RW, "/comments/n49rw/")
    with RedditReplay.from_files([N49RW]) as replay:
        stats = scrape(config(replay, post_ids=["n49rw"], replace_more=5), tmp_path)
        answers = [r.json()["json"]["data"]["things"] for r in replay.served("more")]
        assert len(answers) == 5 and replay.counters["unmatched"] == 0
    top = [(0, c) for d, c in comment_tree(page[1]["data"]["children"]) if d == 0]
    more = [(0, t["data"]) for things in answers for t in things
            if t["kind"] == "t1" and t["data"]["parent_id"] == "t3_n49rw"]
    expected, deleted = split_deleted(top + more)
    comments = rows(tmp_path, "comments")
    assert set(comments) == set(expected) and len(expected) > len(split_deleted(top)[0]) + 50
    assert {i: r["score"] for i, r in comments.items()} == {i: c["score"] for i, c in expected.items()}
    assert all(r["depth"] == 0 for r in comments.values())
    assert stats.dropped.get("deleted_comment", 0) == deleted
    assert stats.requests == 1 + 1 + 5  # token, thread page, five expansions


def test_deep_thread_continue_page_and_empty_or_refused_stubs(tmp_path: Path) -> None:
    """n49rw to depth 10 with every stub tried: the "continue this thread" stub (no children) loads its
    recorded page, the recorded expansion that came back empty and the unrecorded ones (404) are counted,
    and the thread is still stored with everything else."""
    page = recorded(N49RW, "/comments/n49rw/")
    continued = recorded(N49RW, "/comments/n49rw/_/c368bpa")[1]["data"]["children"][0]["data"]
    deeper = {c["data"]["id"] for c in continued["replies"]["data"]["children"] if c["kind"] == "t1"}
    with RedditReplay.from_files([N49RW]) as replay:
        stats = scrape(config(replay, post_ids=["n49rw"], comment_depth=10, replace_more=1000), tmp_path)
        served = {r.source.split("#")[1] for r in replay.served()}
        unmatched = replay.counters["unmatched"]
    assert {"1", "7", "8"} <= served  # the thread page, the empty expansion, the continue page
    comments = rows(tmp_path, "comments")
    # 2016 pages carry no `depth`: it comes from the parent chain, and equals the recorded nesting
    in_page, _ = split_deleted(list(comment_tree(page[1]["data"]["children"])))
    nesting = {c["id"]: d for d, c in comment_tree(page[1]["data"]["children"])}
    assert {i: comments[i]["depth"] for i in in_page} == {i: nesting[i] for i in in_page}
    assert deeper and all(comments[i]["depth"] == 10 for i in deeper) and max(nesting.values()) == 9
    assert stats.skipped["more_empty"] >= 1
    assert unmatched > 100 and stats.skipped["more_not_found"] == unmatched  # each refusal counted, none fatal
    assert rows(tmp_path, "posts")["n49rw"]["comments_status"] == "fetched"


def test_refusals_are_counted_and_never_fatal(tmp_path: Path) -> None:
    """A banned subreddit (404) and a private one (403) are skipped; threads answering 403 (private), 451
    (legal) or showing the post deleted since the listing are counted; threads asked by id that are gone
    store nothing. Nothing stops the scrape."""
    listed = [p for p in listing_posts("new") if kept(p)]
    forbidden, legal, deleted = listed[3]["id"], listed[10]["id"], listed[20]["id"]
    faults = [Fault("403", path=r"^/r/privatesub/"), Fault("403", path=f"/comments/{forbidden}$"),
              Fault("451", path=f"/comments/{legal}$"), Fault("deleted", path=f"/comments/{deleted}$"),
              Fault("403", path="/comments/fo7p5b$")]
    with RedditReplay.from_files([LISTINGS["new"], N49RW, FO7P5B], faults=faults) as replay:
        stats = scrape(config(replay, subreddits=["bannedsub", "privatesub", "AskReddit"]), tmp_path / "a")
        by_id = scrape(config(replay, post_ids=["n49rw", "fo7p5b", "zzzzz9"]), tmp_path / "b")
    posts = rows(tmp_path / "a", "posts")
    assert set(posts) == {p["id"] for p in listed} - {deleted}
    assert (posts[forbidden]["comments_status"], posts[legal]["comments_status"]) == ("forbidden", "unavailable")
    n = len(listed)
    assert stats.skipped == {"listing_not_found": 1, "listing_forbidden": 1, "thread_forbidden": 1,
                             "thread_unavailable": 1, "thread_not_found": n - 3}
    assert stats.comments_status == {"not_found": n - 3, "forbidden": 1, "unavailable": 1}
    assert stats.dropped["post_deleted_after_listing"] == 1
    assert state_counts(tmp_path / "a") == {k: getattr(stats, k) for k in COUNTS}
    assert list(rows(tmp_path / "b", "posts")) == ["n49rw"]
    assert by_id.skipped == {"thread_forbidden": 1, "thread_not_found": 1}


SCENARIO = dict(comment_depth=1, replace_more=5)


def scrape_scenario(replay: RedditReplay, out: Path, on_post=None) -> None:
    """A listing with deleted posts and refused threads, then two threads by id with `more` expansion."""
    scrape(config(replay, listing="controversial", **SCENARIO), out, on_post=on_post)
    scrape(config(replay, post_ids=["n49rw", "fo7p5b"], **SCENARIO), out, on_post=on_post)


def scenario_replay(faults=()) -> RedditReplay:
    return RedditReplay.from_files([LISTINGS["controversial"], N49RW, FO7P5B], faults=faults)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The scenario scraped without faults or interruptions: (records, counts in the progress file)."""
    out = tmp_path_factory.mktemp("reference")
    mp = pytest.MonkeyPatch()
    mp.setenv("REDDIT_CLIENT_ID", "replay-client")
    mp.setenv("REDDIT_CLIENT_SECRET", "replay-secret")
    with scenario_replay() as replay:
        scrape_scenario(replay, out)
    mp.undo()
    return snapshot(out), state_counts(out)


def test_faults_give_the_same_dataset(tmp_path: Path, reference: tuple[dict, dict]) -> None:
    faults = [Fault("truncated", at={1}), Fault("503", at={2}), Fault("429", at={5}), Fault("cut", at={9}),
              Fault("drop", at={14}), Fault("500", path="^/api/morechildren$"),
              Fault("truncated", path="^/comments/n49rw$"), Fault("truncated", path="^/api/morechildren$")]
    with scenario_replay(faults) as replay:
        scrape_scenario(replay, tmp_path)
        fired = {k.split("/")[1] for k in replay.counters if k.startswith("fault/")}
    assert fired == {"truncated", "503", "429", "cut", "drop", "500"}
    assert snapshot(tmp_path) == reference[0] and state_counts(tmp_path) == reference[1]
    assert len(raw_ids(tmp_path, "posts")) == len(set(raw_ids(tmp_path, "posts")))


def test_exception_then_resume_gives_the_same_dataset(tmp_path: Path, reference: tuple[dict, dict]) -> None:
    class Stop(Exception):
        pass

    calls: list[str] = []

    def stop_at_30_and_at_n49rw(post_id: str) -> None:
        calls.append(post_id)
        if len(calls) == 30 or (post_id == "n49rw" and calls.count("n49rw") == 1):
            raise Stop

    with scenario_replay() as replay:
        for attempt in range(3):
            try:
                scrape_scenario(replay, tmp_path, on_post=stop_at_30_and_at_n49rw)
                break
            except Stop:
                assert len(load_records(tmp_path, "posts")) == len(set(calls))  # everything finished is on disk
    assert attempt == 2
    assert snapshot(tmp_path) == reference[0] and state_counts(tmp_path) == reference[1]
    assert len(raw_ids(tmp_path, "posts")) == len(set(raw_ids(tmp_path, "posts")))  # no post fetched twice


def test_sigkill_then_resume_gives_the_same_dataset(tmp_path: Path, reference: tuple[dict, dict]) -> None:
    """SIGKILL between checkpoints (no cleanup at all): the rerun refetches what was not checkpointed and
    counts it once."""
    with scenario_replay() as replay:
        cfg = config(replay, listing="controversial", **SCENARIO)
        code = textwrap.dedent(f"""
            import os, signal
            from data.sources.reddit_api import ScrapeConfig, scrape
            cfg = ScrapeConfig.model_validate_json({cfg.model_dump_json()!r})
            n = []
            def hook(post_id):
                n.append(post_id)
                if len(n) == 40:
                    os.kill(os.getpid(), signal.SIGKILL)
            scrape(cfg, {str(tmp_path)!r}, on_post=hook)
        """)
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=os.environ | {"OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == -9, proc.stderr[-2000:]
        assert 40 - 6 <= len(load_records(tmp_path, "posts")) <= 40  # checkpoint_every=7
        scrape_scenario(replay, tmp_path)
    assert snapshot(tmp_path) == reference[0] and state_counts(tmp_path) == reference[1]


def test_refresh_keeps_comments_status(tmp_path: Path) -> None:
    """/api/info snapshots of stored posts keep how their comments went (the latest snapshot is the one read)."""
    with RedditReplay.from_files([LISTINGS["hot"], N49RW]) as replay:
        scrape(config(replay, listing="hot", limit_per_subreddit=20), tmp_path)
        scrape(config(replay, listing="hot", limit_per_subreddit=20, post_ids=["n49rw"]), tmp_path)
        before = rows(tmp_path, "posts")
        stats = refresh(config(replay), tmp_path)
    after = rows(tmp_path, "posts")
    assert stats.posts == len(before) == 21 and len(raw_ids(tmp_path, "posts")) == 42
    assert {i: r["comments_status"] for i, r in after.items()} == {i: r["comments_status"] for i, r in before.items()}
    assert after["n49rw"]["comments_status"] == "fetched" and all(a["retrieved_utc"] > before[i]["retrieved_utc"]
                                                                 for i, a in after.items())
    assert {i: r["score"] for i, r in after.items()} == {i: r["score"] for i, r in before.items()}


def test_scrape_stage_reaches_the_replay_through_the_environment(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m pipelines scrape --config X scrape.source=reddit` (what `make scrape SOURCE=reddit
    CONFIG=X` runs first) with no URL in the config: REDDIT_OAUTH_URL / REDDIT_URL point praw at the replay."""
    from pipelines.__main__ import main

    cfg_path = tmp_path / "replay.yaml"
    cfg_path.write_text(textwrap.dedent(f"""
        extends: {REPO / 'configs' / 'demo.yaml'}
        run: {{name: replay, root: {tmp_path / 'runs'}, wandb: {{enabled: false}}}}
        rl: {{gold_control: false}}
        scrape:
          reddit: {{subreddits: [AskReddit], listing: new, post_ids: [], progress: false}}
    """))
    with RedditReplay.from_files([LISTINGS["new"]]) as replay:
        monkeypatch.setenv("REDDIT_OAUTH_URL", replay.base_url)
        monkeypatch.setenv("REDDIT_URL", replay.base_url)
        assert main(["scrape", "--config", str(cfg_path), "scrape.source=reddit"]) == 0
        assert replay.counters["endpoint/access_token"] == 1
    stage = tmp_path / "runs" / "replay" / "scrape"
    metrics = json.loads((stage / "metrics.json").read_text())
    n = len([p for p in listing_posts("new") if kept(p)])
    assert len(load_records(stage / "records", "posts")) == n
    assert metrics["scrape/skipped/thread_not_found"] == n and metrics["scrape/comments_status/not_found"] == n
