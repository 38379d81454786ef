"""The headline claims over seeds: per claim the per-seed values, mean, spread and a verdict across seeds.

    python -m pipelines study --config configs/demo.yaml     (the stage: pipelines/stages/study.py)

One seed's numbers are one training path: CPU kernels differ between machines, and the same commit and seed
can land elsewhere on another machine, so a claim such as "PPO beats SFT on gold" needs its spread over seeds.
This module reads each seed's stage outputs (train-reward/metrics.json, eval-policy/vs_sft.json,
steer/metrics.json), collects the claims, and writes study.json, study.md and per_seed.png. It reads files
only, so it imports nothing heavy (pipelines/config.py composes `StudyConfig` from here).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StudyConfig(BaseModel):
    """`python -m pipelines study`: which seeds, and which stages each seed repeats."""

    model_config = ConfigDict(extra="forbid")

    seeds: list[int] = Field(
        [0, 1, 2], min_length=2,
        description="Seeds to repeat the headline stages with: each sets run.seed and the seed of reward, ppo, "
        "rl.baselines and steer (and sft with redo_sft); data.pairs.seed and eval_policy.seed stay, so every "
        "seed is judged on the same held-out prompts.",
    )
    redo_sft: bool = Field(
        False,
        description="Also repeat pretrain and sft per seed (sft.seed = the seed) instead of sharing the run's own "
        "SFT policy: the spread then includes SFT's, at the cost of those stages per seed.",
    )
    steer: bool = Field(
        False, description="Also repeat the steer stage per seed (the steering-success claim); slow, hence off.",
    )
    reuse_main_run: bool = Field(
        True,
        description="A seed whose settings equal the run's own (same saved config, e.g. seed 0 of a seed-0 run) "
        "links the run's completed stages instead of training them again.",
    )

    @field_validator("seeds")
    @classmethod
    def _unique(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"study.seeds lists a seed twice ({seeds}): each seed is one run directory")
        return seeds


@dataclass(frozen=True)
class Estimate:
    """One seed's value of a claim, with that seed's 95% interval when its stage computed one."""

    value: float
    lo: float | None = None
    hi: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.lo is not None and self.hi is not None


@dataclass(frozen=True)
class SeedClaim:
    label: str
    estimate: Estimate
    against_zero: bool = True  # False: a rate with no reference (steering success): spread only, no verdict


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _num(value: Any) -> float | None:
    """A finite number, else None (metrics.json keeps NaN as null; flags are not numbers here)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _slug(method: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", method.lower()).strip("_")


def _last_number(method: str) -> int:
    """'PPO step 40' -> 40, 'best-of-8' -> 8 (-1 without one)."""
    match = re.search(r"(\d+)$", method)
    return int(match.group(1)) if match else -1


def headline_methods(vs_sft: dict) -> list[tuple[str, str, str]]:
    """(key, label, method) of the methods whose gain over SFT is a headline claim: PPO's last snapshot, the
    largest best-of-n, then every other trained policy in eval-policy's order (RLOO, GRPO, the gold control)."""
    ppo = [m for m in vs_sft if m.startswith("PPO step ")]
    bon = [m for m in vs_sft if m.startswith("best-of-")]
    out = []
    if ppo:
        last = max(ppo, key=_last_number)
        out.append(("ppo_final", f"PPO final ({last})", last))
    if bon:
        largest = max(bon, key=_last_number)
        out.append(("best_of_n", largest, largest))
    out += [(_slug(m), m, m) for m in vs_sft if m not in ppo and m not in bon]
    return out


def seed_claims(root: Path) -> dict[str, SeedClaim]:
    """The claims one seed's run directory supports, in headline order; a claim whose output is missing is absent."""
    claims: dict[str, SeedClaim] = {}
    rm = _read_json(root / "train-reward" / "metrics.json") or {}
    gap = _num(rm.get("rm/gap_to_ceiling"))
    if gap is not None:
        claims["rm_gap_to_ceiling"] = SeedClaim(
            "reward model gap to the Bayes ceiling (expected accuracy, paired)",
            Estimate(gap, _num(rm.get("rm/gap_to_ceiling_ci_low")), _num(rm.get("rm/gap_to_ceiling_ci_high"))))
    acc, longer = _num(rm.get("rm/accuracy")), _num(rm.get("rm/baseline/longer_wins"))
    if acc is not None and longer is not None:
        lo, hi = _num(rm.get("rm/accuracy_ci_low")), _num(rm.get("rm/accuracy_ci_high"))
        # longer-wins is a fixed rule on the same held-out pairs, so the accuracy's Wilson CI carries over
        claims["rm_minus_longer_wins"] = SeedClaim(
            "reward model accuracy - longer-wins (held-out pairs)",
            Estimate(acc - longer, None if lo is None else lo - longer, None if hi is None else hi - longer))
    vs_sft = _read_json(root / "eval-policy" / "vs_sft.json") or {}
    for key, label, method in headline_methods(vs_sft):
        for metric, words in (("gold_win", "gold win rate"), ("gold", "gold")):
            stats = vs_sft[method].get(metric) or {}
            mean = _num(stats.get("mean"))
            if mean is not None:
                claims[f"{key}/{metric}"] = SeedClaim(f"{label} - SFT, {words} (paired)",
                                                      Estimate(mean, _num(stats.get("lo")), _num(stats.get("hi"))))
    steer = _read_json(root / "steer" / "metrics.json") or {}
    success = _num(steer.get("steer/target/success_rate"))
    if success is not None:
        claims["steer_target_success"] = SeedClaim("target steering success rate", Estimate(success),
                                                   against_zero=False)
    return claims


def verdict(estimates: list[Estimate]) -> tuple[str, str]:
    """(direction, words) of a difference across seeds: 'above'/'below' when every seed's value has that sign
    (and 'clearly' when every seed's 95% CI excludes 0 as well), 'zero' when every value is 0 (e.g. a win rate
    no method moves on a few prompts), else 'mixed'."""
    n = len(estimates)
    above = sum(e.value > 0 for e in estimates)
    below = sum(e.value < 0 for e in estimates)
    with_ci = all(e.has_ci for e in estimates)
    clear_above = sum(e.has_ci and e.lo > 0 for e in estimates)
    clear_below = sum(e.has_ci and e.hi < 0 for e in estimates)
    for direction, count, clear in (("above", above, clear_above), ("below", below, clear_below)):
        if count == n:
            if not with_ci:
                return direction, f"{direction} 0 in every seed (no per-seed CI)"
            if clear == n:
                return direction, f"clearly {direction} 0 in every seed"
            return direction, f"{direction} 0 in every seed, clearly (95% CI) in {clear} of {n}"
    if above == below == 0:
        return "zero", "exactly 0 in every seed"
    zero = n - above - below
    return "mixed", (f"mixed: above 0 in {above} of {n} seeds ({clear_above} clearly), below in {below} "
                     f"({clear_below} clearly)" + (f", exactly 0 in {zero}" if zero else ""))


def _stats(values: list[float]) -> dict[str, float | None]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def summarize(seed_roots: dict[int, Path]) -> dict:
    """{"seeds": [...], "claims": {key: {label, values, ci, n, mean, std, min, max, direction, verdict}}}.

    `values`/`ci` follow `seeds` (None where a seed lacks the claim); std is the sample standard deviation
    over seeds (ddof 1); the verdict is over the seeds that have the claim."""
    seeds = list(seed_roots)
    per_seed = {seed: seed_claims(root) for seed, root in seed_roots.items()}
    keys: list[str] = []
    for claims in per_seed.values():
        keys += [k for k in claims if k not in keys]
    out: dict[str, dict] = {}
    for key in keys:
        found = [per_seed[s].get(key) for s in seeds]
        present = [c for c in found if c is not None]
        estimates = [c.estimate for c in present]
        entry = {
            "label": present[0].label,
            "values": [c.estimate.value if c else None for c in found],
            "ci": [[c.estimate.lo, c.estimate.hi] if c and c.estimate.has_ci else None for c in found],
            "n": len(present),
            **_stats([e.value for e in estimates]),
        }
        if present[0].against_zero:
            entry["direction"], entry["verdict"] = verdict(estimates)
            if len(present) < len(seeds):
                entry["verdict"] += f" (only {len(present)} of {len(seeds)} seeds have it)"
        else:
            entry["direction"], entry["verdict"] = None, "a rate with no reference: spread only"
        out[key] = entry
    return {"seeds": seeds, "claims": out}


def _cell(value: float | None, ci: list | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else f"{value:+.3f}"


def _opt(value: float | None, sign: bool = True) -> str:
    return "n/a" if value is None else (f"{value:+.3f}" if sign else f"{value:.3f}")


def format_markdown(study: dict, header: list[str], plot: str | None) -> str:
    """study.md: one row per claim, one column per seed (value [95% CI]), then mean, std, min..max, verdict."""
    seeds = study["seeds"]
    cols = ["claim", *[f"seed {s}" for s in seeds], "mean", "std", "min .. max", "verdict across seeds"]
    lines = [*header, "", "| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for c in study["claims"].values():
        cells = [_cell(v, ci) for v, ci in zip(c["values"], c["ci"])]
        lines.append("| " + " | ".join([c["label"], *cells, _opt(c["mean"]), _opt(c["std"], sign=False),
                                        f"{_opt(c['min'])} .. {_opt(c['max'])}", c["verdict"]]) + " |")
    if plot:
        lines += ["", f"![per-seed values]({plot})"]
    return "\n".join(lines) + "\n"


def plot_per_seed(study: dict, path: Path) -> Path | None:
    """One panel per claim: each seed's value with its 95% CI, the mean dashed, 0 in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claims = list(study["claims"].values())
    if not claims:
        return None
    seeds = study["seeds"]
    ncols = min(4, len(claims))
    nrows = math.ceil(len(claims) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, c in zip(axes.flat, claims):
        for i, (v, ci) in enumerate(zip(c["values"], c["ci"])):
            if v is None:
                continue
            yerr = [[v - ci[0]], [ci[1] - v]] if ci else None
            ax.errorbar([i], [v], yerr=yerr, fmt="o", color="#4477aa", capsize=3)
        ax.axhline(c["mean"], color="#cc6677", linestyle="--", linewidth=1)
        if c["direction"] is not None:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(seeds)), [str(s) for s in seeds])
        ax.set_xlabel("seed", fontsize=8)
        ax.set_title("\n".join(textwrap.wrap(c["label"], 34)), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(claims):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def flat_metrics(study: dict) -> dict[str, float]:
    """`study/<claim>/<mean|std|min|max|n>` for metrics.json and W&B."""
    out: dict[str, float] = {"study/seeds": len(study["seeds"])}
    for key, c in study["claims"].items():
        for stat in ("mean", "std", "min", "max", "n"):
            if c[stat] is not None:
                out[f"study/{key}/{stat}"] = c[stat]
    return out
