"""The simulated world's answers about pair sets built by `data.pairs`: the Bayes ceiling of each set and the
per-pair probability that the chosen side wins, under the rule that selected the pair.

Used by the build-data stage (the data card's ceiling) and train-reward / eval-reward (the reward model's gap
to the ceiling); real data has neither, so the pair rules themselves never import the simulator.
"""

from __future__ import annotations

from typing import Callable

import datasets
import numpy as np

from data.card import BayesFn
from data.pairs import PairsConfig
from data.sim.world import PairRule, SimWorld
from data.splits import hash_unit


def sim_pair_rules(cfg: PairsConfig) -> dict[str, PairRule]:
    """The simulator's `PairRule` for each pair set (same_post exact; the others approximate, see sim_bayes_fn)."""
    sp, ta = cfg.same_post, cfg.time_adjacent
    no_floor = -(10**9)
    return {
        "pairs/same_post": PairRule(min_ratio=sp.min_score_ratio, min_score=sp.min_comment_score,
                                    later_preferred=sp.require_chosen_later),
        "same_post/with_time_rule": PairRule(min_ratio=sp.min_score_ratio, min_score=sp.min_comment_score,
                                             later_preferred=True),
        "same_post/without_time_rule": PairRule(min_ratio=sp.min_score_ratio, min_score=sp.min_comment_score,
                                                later_preferred=False),
        "pairs/time_adjacent": PairRule(min_ratio=ta.min_score_ratio, min_score=no_floor, later_preferred=False),
        "pairs_cross_post": PairRule(min_ratio=1.0, min_score=no_floor, later_preferred=False),
    }


def sim_bayes_fn(world: SimWorld, cfg: PairsConfig, max_pairs: int = 2000, n_samples: int = 500, seed: int = 0) -> BayesFn:
    """A `BayesFn` for the simulated world: `world.bayes_accuracy` conditioned on the rule that made each set.

    `world` is a `data.sim.world.SimWorld`.
    same_post sets are exact (ratio, minimum score, timestamp rule); for time_adjacent (time gap) and
    cross_post (normalized gap) the simulator's rule only approximates ours: no minimum score, no
    timestamp rule. At most `max_pairs` pairs (a seeded hash sample) are evaluated per set.
    """
    rules = sim_pair_rules(cfg)

    def bayes(pairs: datasets.Dataset, name: str) -> float:
        if name not in rules:
            raise ValueError(f"no simulator pair rule for pair set {name!r}; known: {sorted(rules)}")
        cols = pairs.select_columns(["pair_id", "chosen_id", "rejected_id"]).to_dict()
        ids = sorted(zip(cols["pair_id"], cols["chosen_id"], cols["rejected_id"]),
                     key=lambda t: hash_unit(t[0], f"bayes-{seed}"))[:max_pairs]
        return world.bayes_accuracy([(c, r) for _, c, r in ids], rule=rules[name], n_samples=n_samples, seed=seed)

    return bayes


def sim_win_prob_fn(world: SimWorld, cfg: PairsConfig, n_samples: int = 2000, seed: int = 0) -> Callable[[datasets.Dataset], np.ndarray]:
    """Per pair P(chosen wins | texts, selection rule) from the simulated world (`SimWorld.win_probabilities`).

    Only same_post pairs get a value (their rule is exact); other strategies get NaN, so an evaluation on
    mixed pairs compares model and ceiling on the same_post pairs alone.
    """
    rule = sim_pair_rules(cfg)["pairs/same_post"]

    def win_probs(pairs: datasets.Dataset) -> np.ndarray:
        strategy = list(pairs["strategy"]) if "strategy" in pairs.column_names else ["same_post"] * len(pairs)
        idx = [i for i, s in enumerate(strategy) if s == "same_post"]
        p = np.full(len(pairs), np.nan)
        if idx:
            sub = pairs.select(idx)
            p[idx] = world.win_probabilities(list(zip(sub["chosen_id"], sub["rejected_id"])), rule=rule,
                                             n_samples=n_samples, seed=seed)
        return p

    return win_probs
