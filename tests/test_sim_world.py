"""The simulated Reddit world: deterministic, Reddit-shaped, gold that ranks summaries, a tuned Bayes ceiling."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter

import numpy as np
import pytest

from data.records import DeletedContent, comment_from_json, post_from_json
from data.sim import text as T
from data.sim.gold import extract_facts, fact_blind_gold, gold_components, gold_score, strip_tldr, style_only_gold
from data.sim.world import PairRule, SimWorld, WorldConfig


@pytest.fixture(scope="module")
def world() -> SimWorld:
    return SimWorld.generate(WorldConfig(seed=3, posts_per_subreddit=150))


def shp_pairs(world: SimWorld) -> list[tuple[str, str]]:
    """SHP's rule: same post, top-level, ratio >= 2, preferred written later, both >= 2, post score >= 10."""
    pairs = []
    for post in world.posts:
        if post["score"] < 10:
            continue
        cs = [world.comments[c] for c in world.top_level(post["id"])]
        cs = [c for c in cs if not c["stickied"] and c["body"] not in ("[deleted]", "[removed]")]
        for a, b in itertools.permutations(cs, 2):
            if a["score"] >= 2 * b["score"] and b["score"] >= 2 and a["created_utc"] > b["created_utc"]:
                pairs.append((a["id"], b["id"]))
    return pairs


def test_same_seed_same_world_and_other_seed_differs() -> None:
    cfg = WorldConfig(seed=11, posts_per_subreddit=15)
    a, b = SimWorld.generate(cfg), SimWorld.generate(cfg)
    assert a.posts == b.posts and a.comments == b.comments and a.quality == b.quality
    c = SimWorld.generate(cfg.model_copy(update={"seed": 12}))
    assert [p["title"] for p in c.posts] != [p["title"] for p in a.posts]


def test_reddit_json_shape(world: SimWorld) -> None:
    base36 = re.compile(r"^[0-9a-z]+$")
    assert len({p["id"] for p in world.posts}) == len(world.posts)
    per_post = Counter(c["link_id"] for c in world.comments.values())
    for post in world.posts:
        assert base36.match(post["id"]) and post["name"] == f"t3_{post['id']}"
        assert post["permalink"].startswith(f"/r/{post['subreddit']}/comments/{post['id']}/")
        assert post["upvote_ratio"] == round(post["upvote_ratio"], 2) and isinstance(post["score"], int)  # as Reddit
        assert post["subreddit_id"].startswith("t5_") and post["is_self"]
        assert post["num_comments"] == per_post[post["name"]]
    # The upvote ratio (kept in [0.5, 1] by construction) follows the post's hidden quality.
    quality, ratio = zip(*((world.quality[p["id"]], p["upvote_ratio"]) for p in world.posts))
    assert np.corrcoef(quality, ratio)[0, 1] > 0.5
    for c in world.comments.values():
        assert base36.match(c["id"]) and c["name"] == f"t1_{c['id']}"
        parent = c["parent_id"]
        assert (c["depth"] == 0) == parent.startswith("t3_")
        parent_time = (world.posts_by_id[parent[3:]] if parent.startswith("t3_") else world.comments[parent[3:]])["created_utc"]
        assert c["created_utc"] >= parent_time
        assert c["created_utc"] <= world.config.now_utc
    depths = {c["depth"] for c in world.comments.values()}
    assert {0, 1, 2} <= depths
    comments = list(world.comments.values())
    assert any(c["body"] == "[deleted]" for c in comments) and any(c["body"] == "[removed]" for c in comments)
    assert any(c["stickied"] and c["distinguished"] == "moderator" for c in comments)
    assert any(c["is_submitter"] for c in comments)
    assert any(c["score"] <= 1 for c in comments) and any(c["score"] >= 50 for c in comments)
    assert any(p["selftext"] in ("[deleted]", "[removed]") for p in world.posts)


def test_records_converters_accept_world_objects(world: SimWorld) -> None:
    kept = dropped = 0
    for post in world.posts:
        try:
            row = post_from_json(post, retrieved_utc=world.config.now_utc, salt="s", source="sim")
            assert row["id"] == post["id"] and row["score"] == post["score"]
            kept += 1
        except DeletedContent:
            dropped += 1
    for c in list(world.comments.values())[:3000]:
        try:
            row = comment_from_json(c, retrieved_utc=world.config.now_utc, salt="s", source="sim")
            assert row["post_id"] == c["link_id"][3:] and row["depth"] == c["depth"]
            kept += 1
        except DeletedContent:
            dropped += 1
    assert kept > 10 * dropped > 0


def test_posts_read_like_reddit_with_author_tldrs(world: SimWorld) -> None:
    live = [p for p in world.posts if p["selftext"] not in ("[deleted]", "[removed]")]
    words = np.array([len(p["selftext"].split()) for p in live])
    assert 60 <= np.percentile(words, 5) and np.percentile(words, 95) <= 320
    with_tldr = [p for p in live if "\n\nTL;DR: " in p["selftext"]]
    assert 0.75 < len(with_tldr) / len(live) < 0.95
    p = with_tldr[0]
    assert world.author_tldr(p["id"]) and world.author_tldr(p["id"]) not in world.post_text(p["id"])
    assert re.search(r"\(\d{2}[MF]\)", " ".join(q["title"] for q in live))  # age tags like (25F)
    assert {q["subreddit"] for q in world.posts} == set(WorldConfig().subreddits)


def test_filler_templates_state_no_facts() -> None:
    pron = {"he": "he", "him": "him", "his": "his", "He": "He", "His": "His"}
    groups = [*T.FILLER.values(), T.QUESTIONS, T.PF_QUESTIONS, T.TIFU_ENDINGS, T.OFFTOPIC, T.REPLIES,
              T.OP_REPLIES, T.TLDR_ENDINGS_FIRST, T.TLDR_ENDINGS_OTHER, T.REACTION_SHORT, (T.MOD_COMMENT,)]
    for template in itertools.chain(*groups):
        assert not extract_facts(template.format(**pron)), template


def test_gold_prefers_a_good_summary_over_bad_ones() -> None:
    rng = random.Random(0)
    for sub in ("relationships", "tifu", "personalfinance"):
        sc = T.sample_scenario(rng, sub)
        title, body = T.render_post(rng, sc, 5)
        post = f"{title}\n\n{body}"
        plan = T.SummaryPlan(frozenset(T.SLOTS), frozenset(), "ok", False, False, False)
        good = gold_score(post, T.render_summary(rng, sc, plan, "first"))
        partial = T.SummaryPlan(frozenset({"person", "event", "object"}), frozenset(), "ok", False, False, False)
        bad_plans = {
            "partial": partial,
            "wrong": T.SummaryPlan(frozenset({"person", "event"}), frozenset({"object", "place"}), "ok", False, False, False),
            "short": T.SummaryPlan(frozenset({"person", "event", "object"}), frozenset(), "short", False, False, False),
            "long": T.SummaryPlan(frozenset(T.SLOTS), frozenset(), "long", False, False, False),
            "repetitive": T.SummaryPlan(partial.keep, frozenset(), "ok", True, False, False),
            "rude": T.SummaryPlan(frozenset(T.SLOTS), frozenset(), "ok", False, True, False),
            "offtopic": T.SummaryPlan(frozenset(), frozenset(), "ok", False, False, True),
        }
        for name, bad in bad_plans.items():
            scores = [gold_score(post, T.render_summary(rng, sc, bad, "first")) for _ in range(5)]
            assert good > max(scores), (sub, name, good, scores)
        assert good > 0.85 and gold_score(post, "") == 0.0
        assert gold_score(post, "I love pizza lol") < 0.3


def test_reference_scorers_miss_exactly_what_they_do_not_read() -> None:
    """A wrong fact costs gold but not the fact-blind scorer; stating fewer facts costs the fact-blind one;
    the style-only scorer sees neither but does see rudeness."""
    post = "My sister borrowed my car for the wedding and crashed it."
    right = "My sister borrowed my car for the wedding and crashed it, now she will not pay for the repair."
    wrong = "My cousin borrowed my bike for the funeral and crashed it, now she will not pay for the repair."
    assert gold_score(post, right) > gold_score(post, wrong) + 0.3
    assert fact_blind_gold(post, right) == pytest.approx(fact_blind_gold(post, wrong))
    factless = "Someone borrowed something of mine and broke it, and now they will not pay for the repair at all."
    assert fact_blind_gold(post, right) > fact_blind_gold(post, factless) + 0.2  # fewer facts stated
    assert style_only_gold(post, right) == pytest.approx(style_only_gold(post, wrong))
    assert style_only_gold(post, right) > style_only_gold(post, right.replace("repair", "repair idiot")) + 0.2
    assert fact_blind_gold(post, "") == 0.0


def test_gold_reads_the_prompt_format_and_ignores_tldr_markers() -> None:
    post = "My (25F) boyfriend (27M) lost my ring at the beach\n\nWe went to the beach for 3 years and it cost $1,200."
    summary = "My bf (27M) lost my ring at the beach, $1,200 gone. I (25F) am so upset, what do I do?"
    prompt = f"SUBREDDIT: r/relationships\n\nTITLE: My (25F) boyfriend (27M) lost my ring at the beach\n\nPOST: {post.split(chr(10), 2)[2]}\n\nTL;DR:"
    with_tldr = post + "\n\nTL;DR: my husband broke my car at the zoo"
    s = gold_score(post, summary)
    assert s == pytest.approx(gold_score(prompt, summary)) == pytest.approx(gold_score(with_tldr, summary))
    assert gold_score(post, "TL;DR: " + summary) == pytest.approx(s)
    assert strip_tldr(prompt).rstrip().endswith("$1,200.")
    comp = gold_components(post, summary + " You idiot.")
    assert comp["rude"] == 1.0 and comp["gold"] < s
    hallucinated = gold_components(post, "My husband (27M) crashed my car at the zoo, $1,200 gone. What do I do now?")
    assert hallucinated["n_hallucinated"] >= 3 and hallucinated["precision"] < 0.5
    # Rule 3 by hand: 2 of the summary's 6 facts (27M, $1,200) are among the post's 8 (coverage capped at 6).
    assert hallucinated["coverage"] == pytest.approx(2 / 6) and hallucinated["precision"] == pytest.approx(2 / 6)
    assert hallucinated["gold"] == pytest.approx(0.45 * 2 / 6 + 0.20 * 2 / 6 + 0.20 * 1.0 + 0.15 * 1.0)


def test_scores_follow_quality_and_exposure(world: SimWorld) -> None:
    rows = []
    for post in world.posts:
        for cid in world.top_level(post["id"]):
            c = world.comments[cid]
            if not c["stickied"]:
                rows.append((world.quality[cid], c["created_utc"] - post["created_utc"], np.log(c["score"] + 2)))
    q, delay, log_score = map(np.array, zip(*rows))
    assert np.corrcoef(q, log_score)[0, 1] > 0.3  # quality earns votes
    early, late = delay < np.percentile(delay, 25), delay > np.percentile(delay, 75)
    assert log_score[early].mean() > log_score[late].mean() + 0.3  # early comments collect more votes
    assert abs(q[early].mean() - q[late].mean()) < 0.05  # ... although they are no better


def test_bayes_ceiling_on_shp_pairs_is_tuned(world: SimWorld) -> None:
    pairs = shp_pairs(world)
    assert len(pairs) > 500
    report = world.bayes_report(pairs, n_samples=600)
    assert 0.70 <= report["bayes_accuracy"] <= 0.80, report
    # The Monte Carlo ceiling agrees with how often the higher-gold side really won.
    assert abs(report["gold_accuracy"] - report["bayes_accuracy"]) < 0.05, report
    # A predictor that also knew the times would be perfect under the later-preferred rule.
    assert world.bayes_accuracy(pairs[:50], PairRule(know_times=True), n_samples=200) == pytest.approx(1.0)
    # Less noise raises the ceiling: the knob it is tuned with works.
    quiet = SimWorld.generate(world.config.model_copy(update={"noise": 0.5, "posts_per_subreddit": 40}))
    assert quiet.bayes_accuracy(shp_pairs(quiet), n_samples=400) > 0.85


def test_win_probabilities_give_the_ceiling_and_expected_accuracies(world: SimWorld) -> None:
    """Per-pair p: mean(max(p, 1-p)) is the Bayes ceiling; picking the higher-gold side scores below it."""
    pairs = shp_pairs(world)[:300]
    p = world.win_probabilities(pairs, n_samples=400, seed=3)
    assert p.shape == (300,) and ((0 <= p) & (p <= 1)).all()
    assert np.maximum(p, 1 - p).mean() == pytest.approx(world.bayes_accuracy(pairs, n_samples=400, seed=3))
    # The chosen side (observed winner) is usually the likelier winner, but not always: votes are noisy.
    assert 0.6 < (p > 0.5).mean() < 1.0
    # Swapping the sides mirrors p up to Monte Carlo noise.
    swapped = world.win_probabilities([(b, a) for a, b in pairs], n_samples=400, seed=3)
    assert np.corrcoef(swapped, 1 - p)[0, 1] > 0.9 and abs((swapped - (1 - p)).mean()) < 0.02


def test_gold_labels(world: SimWorld) -> None:
    def live(cid: str) -> bool:
        c = world.comments[cid]
        return not c["stickied"] and c["body"] not in ("[deleted]", "[removed]")

    post = next(p for p in world.posts if sum(map(live, world.top_level(p["id"]))) >= 2)
    a, b = [c for c in world.top_level(post["id"]) if live(c)][:2]
    label = world.gold_label(a, b)
    assert label == -world.gold_label(b, a)
    assert label == np.sign(world.quality[a] - world.quality[b])
    assert world.quality[a] == pytest.approx(gold_score(world.post_text(post["id"]), world.comments[a]["body"]))
