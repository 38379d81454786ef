"""A seeded simulated Reddit: posts, comment trees and upvotes with a known cause, so learning is measurable.

    from data.sim.world import SimWorld, WorldConfig
    world = SimWorld.generate(WorldConfig(seed=0))      # ~2,250 posts, ~35k comments, a few seconds
    world.posts[0]["title"]; world.comments["kx1a2b3"]["body"]; world.quality["kx1a2b3"]
    world.bayes_accuracy([(chosen_id, rejected_id), ...])  # ceiling of any text-only predictor

Why: upvotes on real Reddit mix quality with exposure (early comments collect more votes) and noise, and
nobody knows the truth. Here the truth is `data.sim.gold.gold_score`, and the observed score of each text is

    L = log(scale) + attention + quality_strength * (gold - 0.5) + exposure_strength * x(time) + noise * eps
    score = floor(exp(L)) - 1              (comments, so scores of -1, 0, 1 occur; posts: floor(exp(L)))

with eps ~ N(0, 1). For a comment x(time) = -log(1 + delay_hours), the delay after its post being lognormal
(median `comment_delay_median_hours`); for a post x = log(min(1, age_hours / 24)). `attention` is shared by
all comments of a post (a popular post lifts its comments). The JSON kept for each post/comment is the `data`
of a Reddit `t3`/`t1` object, so `data.records` converters and praw (through `data.sim.server`) read it as-is.

Bayes ceiling (`SimWorld.bayes_accuracy`): the best predictor of which side of a pair has the higher
observed score that knows everything a text reveals (gold quality, post, subreddit) but not the noise nor,
for comments, the comment times (a reward model sees texts only). It is computed by Monte Carlo conditioned
on the pair's selection rule (`PairRule`, SHP's by default: both scores >= 2, ratio >= 2, the preferred one
written later): per pair, redraw delays and noise from the generative model, keep the draws that the rule
would have selected, p = P(a wins | selected), and the Bayes predictor is right with probability max(p, 1-p).
`noise` is tuned so that this ceiling is about 0.75 on SHP-style same-post pairs (human agreement on TL;DR
comparisons is 0.72-0.77).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from collections import defaultdict
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from data.sim import text as T
from data.sim.gold import gold_score

DEFAULT_SUBREDDITS = {
    "relationships": 1.0, "AskReddit": 2.0, "relationship_advice": 0.8, "tifu": 0.6, "personalfinance": 0.4,
}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def to_base36(n: int) -> str:
    """Reddit ids are base36 integers ("1abcde")."""
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


class WorldConfig(BaseModel):
    """Everything that shapes the simulated world; the same config and seed give the same world."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed of every random draw: same seed, same world.")
    subreddits: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_SUBREDDITS),
        description="Subreddit name -> relative popularity (multiplies score scale and comment counts).",
    )
    posts_per_subreddit: int = Field(450, ge=1, description="Posts generated in each subreddit.")
    top_level_comments: tuple[int, int] = Field(
        (4, 16), description="Range of top-level comments per post (scaled by popularity ** 0.3)."
    )
    body_filler_sentences: tuple[int, int] = Field(
        (2, 14), description="Range of filler sentences in a post body (sets the ~60-300 word length)."
    )
    author_tldr_fraction: float = Field(0.85, ge=0, le=1, description="Share of posts whose author adds a TL;DR.")
    summary_comment_fraction: float = Field(
        0.35, ge=0, le=1, description="Share of top-level comments that are TL;DR-style summaries by other users."
    )
    reply_rate: float = Field(0.5, ge=0, description="Mean number of replies (depth 1) per top-level comment.")
    nested_reply_rate: float = Field(0.25, ge=0, description="Mean number of replies (depth 2) per depth-1 reply.")
    op_reply_fraction: float = Field(0.3, ge=0, le=1, description="Share of replies written by the post's author.")
    deleted_fraction: float = Field(0.03, ge=0, le=1, description="Share of comments shown as [deleted].")
    removed_fraction: float = Field(0.02, ge=0, le=1, description="Share of comments shown as [removed].")
    post_deleted_fraction: float = Field(0.01, ge=0, le=1, description="Share of posts deleted by their author.")
    post_removed_fraction: float = Field(0.01, ge=0, le=1, description="Share of posts removed by moderators.")
    sticky_fraction: float = Field(0.15, ge=0, le=1, description="Share of posts with a stickied moderator comment.")
    edited_fraction: float = Field(0.05, ge=0, le=1, description="Share of posts/comments marked edited.")
    post_scale: float = Field(40.0, gt=0, description="Median post score in a subreddit of popularity 1.")
    comment_scale: float = Field(8.0, gt=0, description="Median exp(L) of a gold-0.5 first comment, popularity 1.")
    quality_strength: float = Field(4.0, ge=0, description="Log-score per unit of gold quality.")
    noise: float = Field(1.2, ge=0, description="Std of the Gaussian log-score noise (tuned: Bayes ceiling ~0.75).")
    post_noise: float = Field(0.8, ge=0, description="Std of the Gaussian log-score noise of posts.")
    attention_share: float = Field(0.7, ge=0, description="How much a post's popularity lifts its comments.")
    exposure_strength: float = Field(
        0.6, ge=0, description="Log-score lost per unit of x(time): early comments collect more votes."
    )
    comment_delay_median_hours: float = Field(2.0, gt=0, description="Median delay of a comment after its post.")
    comment_delay_spread: float = Field(1.2, gt=0, description="Std of the log of comment delays.")
    time_span_days: float = Field(60.0, gt=0, description="Posts are created uniformly over this span before now.")
    now_utc: float = Field(1_700_000_000.0, description="The world's 'now' (time filters, post ages).")


class PairRule(BaseModel):
    """The selection rule a pair passed; the Bayes ceiling conditions on it (SHP's rule by default)."""

    model_config = ConfigDict(extra="forbid")

    min_ratio: float = Field(
        2.0, ge=1, description="Higher score / lower score (both floored at 1) must be at least this."
    )
    min_score: int = Field(2, description="Both scores must be at least this.")
    later_preferred: bool = Field(True, description="The higher-scored side must have been written later.")
    know_times: bool = Field(
        False, description="Whether the predictor knows the comment times (a text-only reward model does not)."
    )


def _slug(title: str) -> str:
    return "_".join(re.findall(r"[a-z0-9]+", title.lower()))[:50].rstrip("_")


def _comment_score(latent: np.ndarray) -> np.ndarray:
    return np.floor(np.exp(latent)) - 1.0


def _post_score(latent: np.ndarray) -> np.ndarray:
    return np.floor(np.exp(latent))


class SimWorld:
    """Posts (`t3` data dicts), comments (`t1` data dicts, by id) and the hidden quantities behind them."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.posts: list[dict[str, Any]] = []
        self.posts_by_id: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        self.children: dict[str, list[str]] = defaultdict(list)  # parent fullname -> child comment ids
        self.quality: dict[str, float] = {}  # id -> gold of the text as a summary of its post
        self._post_text: dict[str, str] = {}
        self._tldr: dict[str, str] = {}
        self._latent: dict[str, float] = {}  # id -> known part of L (everything but exposure-if-unknown, noise)
        self._delay_cap_h: dict[str, float] = {}  # comment id -> longest possible delay (hours)
        self.subreddit_ids: dict[str, str] = {}
        self.generation_seconds = 0.0

    # ------------------------------------------------------------------ generation
    @classmethod
    def generate(cls, config: WorldConfig | None = None, progress: bool = False) -> "SimWorld":
        """Builds the whole world from `config` (deterministic in `config.seed`)."""
        t0 = time.perf_counter()
        cfg = config or WorldConfig()
        world = cls(cfg)
        world._generate(progress)
        world.generation_seconds = time.perf_counter() - t0
        return world

    def _generate(self, progress: bool) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed)
        nrng = np.random.default_rng(cfg.seed)
        span = cfg.time_span_days * 86400.0
        draft_posts: list[dict[str, Any]] = []
        draft_comments: list[dict[str, Any]] = []
        total = cfg.posts_per_subreddit * len(cfg.subreddits)
        bar = tqdm(total=total, desc="sim world", disable=not progress)
        for sub, pop in cfg.subreddits.items():
            self.subreddit_ids[sub] = "t5_" + to_base36(int(hashlib.sha256(sub.encode()).hexdigest()[:8], 16))
            for _ in range(cfg.posts_per_subreddit):
                draft_posts.append(self._draft_post(rng, sub, pop, draft_comments, len(draft_posts)))
                bar.update()
        bar.close()

        # 1. Post times, scores. Post latent: scale + quality of the author's TL;DR + age + noise.
        n_p = len(draft_posts)
        created = cfg.now_utc - nrng.uniform(3600.0, span, size=n_p)
        age_h = (cfg.now_utc - created) / 3600.0
        q_p = np.array([p["_q"] for p in draft_posts])
        pops = np.array([cfg.subreddits[p["_sub"]] for p in draft_posts])
        attention = cfg.post_noise * nrng.standard_normal(n_p)
        known_p = (np.log(cfg.post_scale * pops) + cfg.quality_strength * (q_p - 0.5)
                   + cfg.exposure_strength * np.log(np.minimum(1.0, age_h / 24.0)))
        post_scores = _post_score(known_p + attention)
        ratio = np.clip(0.5 + 0.45 / (1.0 + np.exp(-(3.0 * (q_p - 0.5) + 0.7 * nrng.standard_normal(n_p)
                                                      + 0.3 * np.log1p(np.maximum(post_scores, 0))))), 0.5, 1.0)
        for i, p in enumerate(draft_posts):
            p["_created"], p["_score"], p["_ratio"] = float(created[i]), int(post_scores[i]), round(float(ratio[i]), 2)
            p["_known"], p["_attention"] = float(known_p[i]), float(attention[i])

        # 2. Comment times: top-level after the post, replies after their parent (capped at now).
        n_c = len(draft_comments)
        log_delay = math.log(cfg.comment_delay_median_hours) + cfg.comment_delay_spread * nrng.standard_normal(n_c)
        reply_delay = np.exp(0.0 + 1.0 * nrng.standard_normal(n_c))  # hours after the parent for replies
        eps = nrng.standard_normal(n_c)
        edited_draw = nrng.uniform(size=n_c)
        by_tmp: dict[int, dict[str, Any]] = {}
        for j, c in enumerate(draft_comments):
            post = draft_posts[c["_post"]]
            by_tmp[c["_tmp"]] = c
            if c["_parent"] is None:
                cap_h = (cfg.now_utc - post["_created"]) / 3600.0 - 0.01
                delay = min(math.exp(log_delay[j]), cap_h)
                if c["_kind"] == "sticky":
                    delay = min(1.0 / 60.0, cap_h)
                c["_created"] = post["_created"] + delay * 3600.0
                c["_cap_h"], c["_delay_h"] = cap_h, delay
            else:
                parent = by_tmp[c["_parent"]]
                c["_created"] = min(parent["_created"] + reply_delay[j] * 3600.0, cfg.now_utc - 1.0)
                c["_delay_h"] = (c["_created"] - post["_created"]) / 3600.0
                c["_cap_h"] = c["_delay_h"]
            # 3. Comment latent: scale + post attention + quality + exposure + noise.
            scale = math.log(cfg.comment_scale * cfg.subreddits[post["_sub"]]) - (1.0 if c["_parent"] else 0.0)
            known = scale + cfg.attention_share * post["_attention"] + cfg.quality_strength * (c["_q"] - 0.5)
            c["_known"] = known
            latent = known - cfg.exposure_strength * math.log1p(c["_delay_h"]) + cfg.noise * eps[j]
            c["_score"] = 1 if c["_kind"] == "sticky" else math.floor(math.exp(latent)) - 1  # = _comment_score
            c["_edited"] = edited_draw[j] < cfg.edited_fraction

        # 4. Ids in creation order (Reddit ids grow with time), then the JSON dicts.
        post_order = sorted(range(n_p), key=lambda i: draft_posts[i]["_created"])
        next_id = int("1a0000", 36) + rng.randrange(36**4)
        for i in post_order:
            next_id += rng.randint(1, 40)
            draft_posts[i]["_id"] = to_base36(next_id)
        comment_order = sorted(range(n_c), key=lambda j: draft_comments[j]["_created"])
        next_id = int("k000000", 36) + rng.randrange(36**5)
        for j in comment_order:
            next_id += rng.randint(1, 60)
            draft_comments[j]["_id"] = to_base36(next_id)
        for i in post_order:
            self._add_post(draft_posts[i])
        for j in comment_order:
            self._add_comment(draft_comments[j], draft_posts, by_tmp)
        for c_ids in self.children.values():
            c_ids.sort(key=lambda cid: self.comments[cid]["created_utc"])

    def _draft_post(
        self, rng: random.Random, sub: str, pop: float, comments: list[dict[str, Any]], index: int
    ) -> dict[str, Any]:
        cfg = self.config
        sc = T.sample_scenario(rng, sub)
        title, body = T.render_post(rng, sc, rng.randint(*cfg.body_filler_sentences))
        post_text = f"{title}\n\n{body}"
        tldr = ""
        if rng.random() < cfg.author_tldr_fraction:
            tldr = T.render_summary(rng, sc, _author_plan(rng), voice="first")
        q = gold_score(post_text, tldr) if tldr else 0.3
        u = rng.random()
        status = "deleted" if u < cfg.post_deleted_fraction else (
            "removed" if u < cfg.post_deleted_fraction + cfg.post_removed_fraction else "ok")
        post = {"_sub": sub, "_sc": sc, "_title": title, "_body": body, "_tldr": tldr, "_text": post_text,
                "_q": q, "_author": T.username(rng), "_status": status, "_edited": rng.random() < cfg.edited_fraction}

        def add(kind: str, text: str, parent: int | None, depth: int, author: str, q: float) -> int:
            tmp = len(comments)
            u = rng.random()
            status = "deleted" if u < cfg.deleted_fraction else (
                "removed" if u < cfg.deleted_fraction + cfg.removed_fraction else "ok")
            if kind == "sticky":
                status = "ok"
            comments.append({"_tmp": tmp, "_post": index, "_parent": parent, "_depth": depth, "_kind": kind,
                             "_text": text, "_author": author, "_q": q, "_status": status})
            return tmp

        if rng.random() < cfg.sticky_fraction:
            add("sticky", T.MOD_COMMENT, None, 0, "AutoModerator", 0.0)
        lo, hi = cfg.top_level_comments
        n_top = max(0, round(rng.randint(lo, hi) * pop**0.3))
        for _ in range(n_top):
            if rng.random() < cfg.summary_comment_fraction:
                body_c = rng.choice(("TL;DR: ", "tl;dr ", "TLDR: ", "tl;dr: ", "")) + T.render_summary(
                    rng, sc, _comment_plan(rng), voice="other")
                kind = "summary"
            else:
                body_c, kind = T.render_comment(rng, sc), "comment"
            top = add(kind, body_c, None, 0, T.username(rng), gold_score(post_text, body_c))
            for _ in range(_poisson(rng, cfg.reply_rate)):
                by_op = rng.random() < cfg.op_reply_fraction
                r_text = T.render_reply(rng, sc, by_op)
                r = add("reply", r_text, top, 1, post["_author"] if by_op else T.username(rng),
                        gold_score(post_text, r_text))
                for _ in range(_poisson(rng, cfg.nested_reply_rate)):
                    by_op2 = rng.random() < cfg.op_reply_fraction
                    r2_text = T.render_reply(rng, sc, by_op2)
                    add("reply", r2_text, r, 2, post["_author"] if by_op2 else T.username(rng),
                        gold_score(post_text, r2_text))
        return post

    def _add_post(self, d: dict[str, Any]) -> None:
        sub, pid = d["_sub"], d["_id"]
        permalink = f"/r/{sub}/comments/{pid}/{_slug(d['_title'])}/"
        selftext = d["_body"] + (f"\n\nTL;DR: {d['_tldr']}" if d["_tldr"] else "")
        author = d["_author"]
        removed_by = None
        if d["_status"] == "deleted":
            selftext, author, removed_by = "[deleted]", "[deleted]", "deleted"
        elif d["_status"] == "removed":
            selftext, author, removed_by = "[removed]", "[deleted]", "moderator"
        n_comments = 0  # filled after comments are added
        post = {
            "id": pid, "name": f"t3_{pid}", "subreddit": sub, "subreddit_id": self.subreddit_ids[sub],
            "subreddit_name_prefixed": f"r/{sub}", "title": d["_title"], "selftext": selftext,
            "selftext_html": None, "author": author,
            "author_fullname": None if author == "[deleted]" else "t2_" + _hash36(author),
            "created_utc": round(d["_created"]), "created": round(d["_created"]), "score": d["_score"],
            "ups": d["_score"], "downs": 0, "upvote_ratio": d["_ratio"], "num_comments": n_comments,
            "over_18": False, "edited": round(d["_created"]) + 3600 if d["_edited"] else False,
            "stickied": False, "distinguished": None, "permalink": permalink,
            "url": f"https://www.reddit.com{permalink}", "is_self": True, "domain": f"self.{sub}",
            "link_flair_text": None, "locked": False, "archived": False, "spoiler": False, "gilded": 0,
            "total_awards_received": 0, "num_crossposts": 0, "thumbnail": "self",
            "removed_by_category": removed_by,
        }
        self.posts.append(post)
        self.posts_by_id[pid] = post
        self._post_text[pid] = d["_text"]
        self._tldr[pid] = d["_tldr"]
        self.quality[pid] = d["_q"]
        self._latent[pid] = d["_known"]
        d["_post_dict"] = post

    def _add_comment(self, c: dict[str, Any], posts: list[dict[str, Any]], by_tmp: dict[int, dict[str, Any]]) -> None:
        post_d = posts[c["_post"]]
        post = post_d["_post_dict"]
        cid = c["_id"]
        parent_id = post["name"] if c["_parent"] is None else "t1_" + by_tmp[c["_parent"]]["_id"]
        body, author = c["_text"], c["_author"]
        if c["_status"] == "deleted":
            body, author = "[deleted]", "[deleted]"
        elif c["_status"] == "removed":
            body, author = "[removed]", "[deleted]"
        sticky = c["_kind"] == "sticky"
        created = round(c["_created"])
        comment = {
            "id": cid, "name": f"t1_{cid}", "link_id": post["name"], "parent_id": parent_id, "body": body,
            "body_html": None, "author": author,
            "author_fullname": None if author == "[deleted]" else "t2_" + _hash36(author),
            "created_utc": created, "created": created, "score": c["_score"], "ups": c["_score"], "downs": 0,
            "depth": c["_depth"], "is_submitter": author == post_d["_author"] and not sticky,
            "edited": created + 600 if c["_edited"] else False, "stickied": sticky,
            "distinguished": "moderator" if sticky else None, "subreddit": post["subreddit"],
            "subreddit_id": post["subreddit_id"], "subreddit_name_prefixed": post["subreddit_name_prefixed"],
            "permalink": f"{post['permalink']}{cid}/", "score_hidden": False, "controversiality": 0,
            "collapsed": False, "locked": False, "archived": False, "gilded": 0, "total_awards_received": 0,
            "send_replies": True, "replies": "",
        }
        self.comments[cid] = comment
        self.children[parent_id].append(cid)
        post["num_comments"] += 1
        self.quality[cid] = c["_q"]
        self._latent[cid] = c["_known"]
        self._delay_cap_h[cid] = c["_cap_h"]

    # ------------------------------------------------------------------ accessors
    def post_text(self, post_id: str) -> str:
        """Title + body of a post with its author's TL;DR removed (what gold scoring reads)."""
        return self._post_text[post_id]

    def author_tldr(self, post_id: str) -> str:
        """The author's TL;DR ("" when the post has none)."""
        return self._tldr[post_id]

    def top_level(self, post_id: str) -> list[str]:
        """Ids of a post's top-level comments in creation order."""
        return list(self.children.get(f"t3_{post_id}", ()))

    def post_of(self, thing_id: str) -> dict[str, Any]:
        """The post a comment belongs to (or the post itself)."""
        if thing_id in self.posts_by_id:
            return self.posts_by_id[thing_id]
        return self.posts_by_id[self.comments[thing_id]["link_id"][3:]]

    def gold_label(self, id_a: str, id_b: str) -> int:
        """+1 if `id_a` has the higher gold quality, -1 if `id_b` has, 0 on a tie."""
        qa, qb = self.quality[id_a], self.quality[id_b]
        return (qa > qb) - (qa < qb)

    def gold_accuracy(self, pairs: Iterable[tuple[str, str]]) -> float:
        """Share of (chosen, rejected) pairs whose chosen side has the higher gold (ties count half)."""
        labels = [self.gold_label(a, b) for a, b in pairs]
        return float(np.mean([(l + 1) / 2 for l in labels])) if labels else float("nan")

    def stats(self) -> dict[str, float]:
        n_top = sum(1 for c in self.comments.values() if c["depth"] == 0)
        return {
            "posts": len(self.posts), "comments": len(self.comments), "top_level_comments": n_top,
            "generation_seconds": self.generation_seconds,
            "mean_post_score": float(np.mean([p["score"] for p in self.posts])),
            "mean_comment_score": float(np.mean([c["score"] for c in self.comments.values()])),
        }

    # ------------------------------------------------------------------ Bayes ceiling
    def bayes_accuracy(
        self, pairs: Sequence[tuple[str, str]], rule: PairRule | None = None, n_samples: int = 2000,
        seed: int = 0,
    ) -> float:
        """Expected accuracy of the Bayes-optimal text-only predictor on (chosen_id, rejected_id) pairs.

        Pairs are of two comments of the same post, or of two posts. Monte Carlo (module docstring):
        for each pair redraw the unknown terms (noise; comment delays unless `rule.know_times`) n_samples
        times, keep the draws the rule selects, p = P(first side wins | selected); the result is the mean
        of max(p, 1 - p). Pairs no draw selects count 0.5.
        """
        return self.bayes_report(pairs, rule, n_samples, seed)["bayes_accuracy"]

    def bayes_report(
        self, pairs: Sequence[tuple[str, str]], rule: PairRule | None = None, n_samples: int = 2000,
        seed: int = 0,
    ) -> dict[str, float]:
        """`bayes_accuracy` plus the realized accuracy of the Bayes decisions on the observed labels
        (the first id of each pair is the observed winner) and the gold-ranking accuracy."""
        if not pairs:
            raise ValueError("bayes_accuracy needs at least one pair")
        p, selected = self._win_probabilities(pairs, rule or PairRule(), n_samples, seed)
        return {
            "bayes_accuracy": float(np.mean(np.maximum(p, 1 - p))),
            "bayes_realized_accuracy": float(np.mean(p >= 0.5)),  # first side is the observed winner
            "gold_accuracy": self.gold_accuracy(pairs),
            "pairs": float(len(pairs)),
            "pairs_without_selected_draws": float((selected == 0).sum()),
        }

    def win_probabilities(
        self, pairs: Sequence[tuple[str, str]], rule: PairRule | None = None, n_samples: int = 2000,
        seed: int = 0,
    ) -> np.ndarray:
        """Per pair, p = P(first side has the higher observed score | the pair passed `rule`, its texts).

        What a text-only oracle knows about each label. Any predictor's *expected* accuracy on the pairs is
        mean(p if it prefers the first side else 1 - p), and the Bayes ceiling is mean(max(p, 1 - p)): both
        averaged over the label noise, so a model and the ceiling compare on the same pairs without the
        noise of the realized labels (a paired, much tighter comparison). Pairs no draw selects get 0.5.
        """
        if not pairs:
            raise ValueError("win_probabilities needs at least one pair")
        return self._win_probabilities(pairs, rule or PairRule(), n_samples, seed)[0]

    def _win_probabilities(
        self, pairs: Sequence[tuple[str, str]], rule: PairRule, n_samples: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(p, number of selected draws) per pair: the Monte Carlo of the module docstring."""
        cfg = self.config
        rng = np.random.default_rng(seed)
        probs, n_selected = [], []
        chunk = max(1, 2_000_000 // n_samples)
        for start in range(0, len(pairs), chunk):
            part = pairs[start: start + chunk]
            known = np.array([[self._latent[a], self._latent[b]] for a, b in part])  # (P, 2)
            is_post = np.array([a in self.posts_by_id for a, _ in part])
            P = len(part)
            eps = rng.standard_normal((P, 2, n_samples))
            # Times: comments redraw delays (hours after the post) unless known; posts keep their times.
            times = np.zeros((P, 2, n_samples))
            exposure = np.zeros((P, 2, n_samples))
            for k, (a, b) in enumerate(part):
                for s, cid in enumerate((a, b)):
                    if is_post[k]:
                        times[k, s] = self.posts_by_id[cid]["created_utc"] / 3600.0
                        continue
                    c = self.comments[cid]
                    actual = (c["created_utc"] - self.post_of(cid)["created_utc"]) / 3600.0
                    if rule.know_times:
                        d = np.full(n_samples, actual)
                    else:
                        d = np.minimum(np.exp(math.log(cfg.comment_delay_median_hours)
                                              + cfg.comment_delay_spread * rng.standard_normal(n_samples)),
                                       self._delay_cap_h[cid])
                    times[k, s] = d
                    exposure[k, s] = -cfg.exposure_strength * np.log1p(d)
            noise = np.where(is_post[:, None, None], cfg.post_noise, cfg.noise)
            latent = known[:, :, None] + exposure + noise * eps  # (P, 2, S)
            score = np.where(is_post[:, None, None], _post_score(latent), _comment_score(latent))
            hi, lo = score.max(axis=1), score.min(axis=1)
            a_wins = score[:, 0] > score[:, 1]
            # Ratio with scores floored at 1 (defined for 0 and negative scores too, as data.pairs does).
            sel = (lo >= rule.min_score) & (np.maximum(hi, 1) >= rule.min_ratio * np.maximum(lo, 1)) & (hi != lo)
            if rule.later_preferred:
                winner_later = np.where(a_wins, times[:, 0] > times[:, 1], times[:, 1] > times[:, 0])
                sel &= winner_later
            n_sel = sel.sum(axis=1)
            probs.append(np.where(n_sel > 0, (sel & a_wins).sum(axis=1) / np.maximum(n_sel, 1), 0.5))
            n_selected.append(n_sel)
        return np.concatenate(probs), np.concatenate(n_selected)


@lru_cache(maxsize=None)
def _hash36(name: str) -> str:
    return to_base36(int(hashlib.sha256(name.encode()).hexdigest()[:10], 16))[:8]


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: lam is small (< 2) here.
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def _plan(rng: random.Random, keep_n: int, p_wrong: float, p_long: float, p_short: float, p_rep: float,
          p_rude: float, p_off: float) -> T.SummaryPlan:
    # The who/what facts come first so a short summary still names them.
    order = ["person", "event", "object"]
    rng.shuffle(order)
    rest = ["place", "other", "me", "money", "dur"]
    rng.shuffle(rest)
    order += rest
    keep = order[:keep_n]
    dropped = order[keep_n:]
    wrong = [s for s in dropped if rng.random() < p_wrong][:2]
    u = rng.random()
    length = "long" if u < p_long else ("short" if u < p_long + p_short else "ok")
    return T.SummaryPlan(frozenset(keep), frozenset(wrong), length, rng.random() < p_rep, rng.random() < p_rude,
                         rng.random() < p_off)


def _author_plan(rng: random.Random) -> T.SummaryPlan:
    """Authors' TL;DRs: mostly decent, some partial, long or wrong."""
    return _plan(rng, rng.choice((2, 3, 4, 4, 5, 5, 6, 6, 7, 8)), 0.08, 0.15, 0.08, 0.04, 0.02, 0.02)


def _comment_plan(rng: random.Random) -> T.SummaryPlan:
    """Commenters' summaries: the whole range, from precise to rude or off-topic."""
    return _plan(rng, rng.randint(1, 8), 0.2, 0.2, 0.2, 0.12, 0.1, 0.08)
