"""`runs/<name>/REPORT.md`: the project's questions answered with the numbers of one run.

    python -m pipelines report --config configs/demo.yaml

Reads only files the stages wrote (`DONE.json`, `metrics.json`, `metrics.jsonl`, table JSONs, PNGs), so
the report can be rebuilt at any time and never mixes runs. Every section names the stage, config, seed
and commit that produced its numbers; a stage that has not run is reported as missing, not guessed.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reward_model.evaluate import weak_reward_warning  # noqa: E402


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return out + [""]


class RunReader:
    """Access to one run directory's stage outputs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def done(self, stage: str) -> dict | None:
        return _read_json(self.root / stage / "DONE.json")

    def metrics(self, stage: str) -> dict:
        return _read_json(self.root / stage / "metrics.json") or {}

    def table(self, stage: str, key: str) -> dict | None:
        return _read_json(self.root / stage / f"{key.replace('/', '_')}.json")

    def curve(self, stage: str) -> list[dict]:
        path = self.root / stage / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @functools.cached_property
    def source(self) -> str | None:
        """`scrape.source` of the run (from the first stage's saved config), None when no stage recorded it."""
        for stage in ("scrape", "build-data", "sft", "train-reward", "ppo"):
            path = self.root / stage / "config.yaml"
            if path.is_file():
                return ((yaml.safe_load(path.read_text()) or {}).get("scrape") or {}).get("source")
        return None

    @property
    def study(self) -> dict | None:
        """The headline claims over seeds (`python -m pipelines study`), when a study completed in this run."""
        return _read_json(self.root / "study" / "study.json") if self.done("study") else None

    @property
    def has_gold(self) -> bool:
        """Only the simulated world has a hidden gold score."""
        return self.source == "sim"

    def provenance(self, stage: str) -> str:
        info = self.done(stage)
        if not info:
            return f"_stage `{stage}` has not completed in this run._"
        return (f"_Stage `{stage}`: config `{info.get('config', '?')}`, seed {info.get('seed', '?')}, "
                f"commit `{info.get('commit', '?')}`, {info.get('seconds', 0):.0f} s._")


def _across_seeds(study: dict | None, key: str) -> str | None:
    """One claim of the study in words: mean, spread and the verdict across seeds; None without it."""
    c = (study or {}).get("claims", {}).get(key)
    if not c:
        return None
    std = "n/a" if c.get("std") is None else f"{c['std']:.3f}"
    return (f"mean {c['mean']:+.3f} (std {std}, {c['min']:+.3f} to {c['max']:+.3f}) over {c['n']} seeds: "
            f"{c['verdict']}")


SINGLE_SEED = "single seed; `make study` gives the spread over seeds"


def _study_section(r: RunReader) -> list[str]:
    """The study's table (claims x mean, spread, verdict) when one completed, else a line saying the report rests
    on one seed."""
    study = r.study
    if not study:
        return ["_Every number below comes from one seed of one machine: CPU kernels and seeds move them. "
                "`make study` repeats the stages behind the headline claims over seeds._", ""]
    lines = ["## Across seeds: the study", "", r.provenance("study"), "",
             f"Seeds {', '.join(map(str, study['seeds']))}, each repeating {', '.join(study.get('repeated', []))} "
             f"from this run's own {', '.join(study.get('shared', []))} (per-seed values and intervals: "
             "[study/study.md](study/study.md)):", ""]
    lines += _table(["claim", "mean", "std", "min", "max", "verdict across seeds"],
                    [[c["label"], c["mean"], c["std"], c["min"], c["max"], c["verdict"]]
                     for c in study["claims"].values()])
    if (r.root / "study" / "per_seed.png").is_file():
        lines += ["![per-seed values](study/per_seed.png)", ""]
    return lines


def _data_section(r: RunReader) -> list[str]:
    lines = ["## 1. Data: what the upvote rules keep", "", r.provenance("build-data"), ""]
    card = _read_json(r.root / "build-data" / "data_card.json")
    scrape = r.metrics("scrape")
    if scrape and "scrape/lines_read" in scrape:  # dumps
        lines += [f"Read {_fmt(scrape.get('scrape/lines_read'), 0)} dump lines from {_fmt(scrape.get('scrape/files'), 0)} "
                  f"files; kept {_fmt(scrape.get('scrape/posts_kept'), 0)} posts and "
                  f"{_fmt(scrape.get('scrape/comments_kept'), 0)} comments. {r.provenance('scrape')}", ""]
    elif scrape:
        lines += [f"Scraped {_fmt(scrape.get('scrape/posts'), 0)} posts and {_fmt(scrape.get('scrape/comments'), 0)} "
                  f"comments in {_fmt(scrape.get('scrape/requests'), 0)} requests "
                  f"({_fmt(scrape.get('scrape/items_per_request'), 1)} items per request). {r.provenance('scrape')}", ""]
    skipped = {k.removeprefix("scrape/dropped/"): v for k, v in scrape.items() if k.startswith("scrape/dropped/") and v}
    if skipped:
        lines += ["Skipped while scraping, by reason: " + ", ".join(f"{k} {_fmt(v, 0)}" for k, v in sorted(skipped.items()))
                  + ".", ""]
    if not card:
        return lines + ["No data card.", ""]
    splits = card["splits"]
    lines += ["Rows per dataset and split:", ""]
    lines += _table(["dataset", "train", "validation", "test"],
                    [[name, c.get("train", 0), c.get("validation", 0), c.get("test", 0)] for name, c in splits.items()])
    drops = card.get("drops", {})
    if drops:
        lines += ["Rows dropped by each rule:", ""]
        lines += _table(["rule", "rows"], sorted(drops.items(), key=lambda kv: -kv[1]))
    gold = card.get("gold_agreement") or {}
    if gold:
        bayes = card.get("bayes_ceiling") or {}
        lines += ["### The timestamp rule", "",
                  "Share of pairs whose preferred (higher-voted) side also has the higher hidden gold quality, and "
                  "the Bayes ceiling of predicting the vote from text. SHP's rule keeps a pair only when the "
                  "preferred comment was written later, so exposure time cannot explain its score:", ""]
        lines += _table(["pairs", "n", "preferred has higher gold", "Bayes ceiling"],
                        [[k, v.get("pairs"), v.get("preferred_has_higher_gold"), bayes.get(k)] for k, v in gold.items()])
        with_rule = (gold.get("same_post/with_time_rule") or {}).get("preferred_has_higher_gold")
        without = (gold.get("same_post/without_time_rule") or {}).get("preferred_has_higher_gold")
        if with_rule is not None and without is not None:
            lines += [f"**The timestamp rule raises gold agreement of same_post pairs from {without:.3f} to "
                      f"{with_rule:.3f}** ({with_rule - without:+.3f}).", ""]
    return lines


def _reward_section(r: RunReader) -> list[str]:
    stage = "eval-reward" if r.done("eval-reward") else "train-reward"
    m = r.metrics(stage)
    lines = ["## 2. Reward model: how much of the vote can be predicted from text?", "", r.provenance(stage), ""]
    if "rm/accuracy" not in m:
        return lines + ["No reward-model evaluation.", ""]
    warning = weak_reward_warning(m)
    if warning:
        print(f"[report] {warning}", flush=True)
        lines += [f"**{warning}**", ""]
    rows = [
        ["reward model", m.get("rm/accuracy"), f"[{_fmt(m.get('rm/accuracy_ci_low'))}, {_fmt(m.get('rm/accuracy_ci_high'))}]"],
        ["longer wins", m.get("rm/baseline/longer_wins"), ""],
        ["later wins", m.get("rm/baseline/later_wins"), ""],
        ["random", m.get("rm/baseline/random"), ""],
    ]
    if "rm/bayes_ceiling" in m:
        rows.append(["Bayes ceiling (simulator, expected)", m["rm/bayes_ceiling"], ""])
    if "rm/expected_accuracy" in m:
        rows.append(["reward model (simulator, expected)", m["rm/expected_accuracy"], ""])
    if "rm/gold/accuracy" in m:
        rows.append(["reward model vs GOLD labels", m["rm/gold/accuracy"],
                     f"[{_fmt(m.get('rm/gold/accuracy_ci_low'))}, {_fmt(m.get('rm/gold/accuracy_ci_high'))}]"])
        rows.append(["observed votes vs gold labels", m.get("rm/gold/label_agreement"), ""])
    lines += [f"Held-out pairwise accuracy on observed upvote labels ({_fmt(m.get('rm/n_pairs'), 0)} pairs, 95% Wilson CI):", ""]
    lines += _table(["predictor", "accuracy", "95% CI"], rows)
    later = m.get("rm/baseline/later_wins")
    text_baselines = [v for v in (m.get("rm/baseline/longer_wins"), m.get("rm/baseline/random"))
                      if isinstance(v, (int, float)) and not math.isnan(v)]
    verdict = [f"- Margin over the best text-only baseline: {m['rm/accuracy'] - max(text_baselines):+.3f}."]
    if isinstance(later, (int, float)) and later >= 0.99:
        verdict.append("- later-wins is 1.0 by construction: the timestamp rule keeps only pairs whose preferred "
                       "comment was written later. The reward model never sees times, so this baseline measures "
                       "the selection rule, not a competitor; the text-only baselines are the fair comparison.")
    if "rm/expected_accuracy" in m:
        verdict.append(
            f"- Gap to the Bayes ceiling: {m['rm/gap_to_ceiling']:.3f} [{_fmt(m.get('rm/gap_to_ceiling_ci_low'))}, "
            f"{_fmt(m.get('rm/gap_to_ceiling_ci_high'))}] (paired bootstrap over {_fmt(m.get('rm/oracle/n_pairs'), 0)} "
            f"same_post pairs). Both sides are expected accuracies under the simulator's win probability of each "
            f"pair, so the realized labels' noise cancels; the reward model picks against the Bayes decision on "
            f"{m.get('rm/bayes_disagreement', float('nan')):.1%} of the pairs.")
        across = _across_seeds(r.study, "rm_gap_to_ceiling")
        verdict.append(f"  Across the study's seeds the gap is {across} (this run's seed above)." if across
                       else "  Single seed: `make study` gives this gap's spread over seeds.")
    if "rm/probe/fact_swap_accuracy" in m:
        verdict.append(f"- Fact-swap probe: the reward model prefers a held-out reference TL;DR over the same TL;DR with "
                       f"one fact word swapped in {m['rm/probe/fact_swap_accuracy']:.3f} of "
                       f"{_fmt(m.get('rm/probe/fact_swap_n'), 0)} pairs (0.5 = blind to facts; gold prefers the "
                       f"original almost always).")
    if "rm/human_agreement" in m:
        verdict.append(f"- Agreement with human comparisons: {m['rm/human_agreement']:.3f}.")
    lines += verdict + [""]
    refs = r.table(stage, "rm/reference_predictors")
    if refs and refs["rows"]:
        lines += ["Where the reward model sits among text scorers of known ability (simulator; expected accuracy on the "
                  f"same pairs, ceiling {_fmt(m.get('rm/bayes_ceiling'))}; gap with a paired 95% bootstrap CI). "
                  "gold_facts_unchecked counts the facts a summary states without checking them against the post; "
                  "gold_style_only reads length, repetition and rudeness only:", ""]
        lines += _table(refs["columns"], refs["rows"])
        blind = m.get("rm/reference/gold_facts_unchecked/gap_to_ceiling")
        if isinstance(blind, (int, float)):
            lines += [f"A scorer that knows every other term of gold and counts the facts a summary states, without "
                      f"checking them against the post, stays {blind:.3f} below the ceiling: a reward model that gets "
                      f"closer has to check facts against the post (the fact-swap probe above says whether it does).", ""]
    by_ratio = r.table(stage, "rm/by_ratio")
    if by_ratio and by_ratio["rows"]:
        cols = by_ratio["columns"]
        keep = [c for c in ("value", "n", "accuracy", "ci_low", "ci_high", "longer_wins", "later_wins") if c in cols]
        lines += ["Accuracy by score-ratio bucket:", ""]
        lines += _table(keep, [[row[cols.index(c)] for c in keep] for row in by_ratio["rows"]])
    if (r.root / stage / "reliability.png").is_file():
        lines += [f"Calibration: ECE {_fmt(m.get('rm/ece'))}.", "", f"![reliability]({stage}/reliability.png)", ""]
    return lines


def _rows(value: Any) -> list[dict]:
    return value.get("rows", []) if isinstance(value, dict) else (value or [])


def _side_by_side(r: RunReader) -> list[dict]:
    """eval-policy's rows (SFT, best-of-n, PPO, RLOO/GRPO), then the steer stage's own rows.

    Each stage's rows are read from its own output, so re-running eval-policy (say, with new baselines)
    shows up without re-running steering.
    """
    rows = _rows(_read_json(r.root / "eval-policy" / "policy_table.json"))
    seen = {row.get("method") for row in rows}
    steer = _rows(_read_json(r.root / "steer" / "side_by_side.json"))
    return rows + [row for row in steer if row.get("method") not in seen]


def _win_text(row: dict) -> str:
    ci = row.get("gold_win_ci") or [None, None]
    return f"{_fmt(row.get('gold_win_rate'))} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _gain_text(stats: dict) -> str:
    return f"{stats['mean']:+.3f} [{stats['lo']:+.3f}, {stats['hi']:+.3f}]"


def _paired_lines(vs_sft: dict[str, dict], last_ppo: str, scope: str = "") -> list[str]:
    """eval-policy's paired comparison with SFT (vs_sft.json): the verdict for PPO's last snapshot and a table."""
    if not vs_sft:
        return []
    lines = []
    ppo = vs_sft.get(last_ppo)
    if ppo:
        w = ppo["gold_win"]
        verdict = "clearly above" if w["lo"] > 0 else ("clearly below" if w["hi"] < 0 else "not separable from")
        lines.append(f"- Paired on the same {_fmt(w.get('prompts'), 0)} prompts (what the CIs above ignore: most of "
                     f"their width is which prompts are easy): {last_ppo} minus SFT in gold win rate "
                     f"{_gain_text(w)}, P(gain <= 0) = {_fmt(w['p_not_above'])}: {verdict} SFT{scope}; in gold "
                     f"{_gain_text(ppo['gold'])}.")
    lines += ["", "Each method minus SFT on the same held-out prompts (95% bootstrap over prompts):", ""]
    lines += _table(["method", "gold win rate - SFT", "P(gain <= 0)", "gold - SFT"],
                    [[m, _gain_text(d["gold_win"]), d["gold_win"]["p_not_above"], _gain_text(d["gold"])]
                     for m, d in vs_sft.items()])
    return lines


def _policy_verdict(table: list[dict], vs_sft: dict[str, dict] | None = None, study: dict | None = None) -> list[str]:
    """Does RL beat SFT on gold? Computed from the table's rows: PPO's last snapshot, the largest best-of-n,
    and the gold-reward PPO control when present; with `vs_sft` (eval-policy's paired comparison) also the
    paired gain over SFT on the same prompts, which decides this seed's verdict when present; with `study`
    (the study over seeds) the verdict across seeds comes first, and this run's numbers are one of its seeds."""
    by = {row.get("method"): row for row in table}
    sft = by.get("SFT")
    ppo = [row for row in table if str(row.get("method", "")).startswith("PPO step")]
    if not sft or not ppo:
        return []
    last = ppo[-1]
    s_ci, p_ci = sft.get("gold_win_ci") or [0, 0], last.get("gold_win_ci") or [0, 0]
    verdict = "clearly above" if p_ci[0] > s_ci[1] else ("clearly below" if p_ci[1] < s_ci[0] else "not separable from")
    win, gold = _across_seeds(study, "ppo_final/gold_win"), _across_seeds(study, "ppo_final/gold")
    scope = " in this run's seed" if win else f" ({SINGLE_SEED})"
    lines = ["**Does RL beat SFT on gold?**", ""]
    if win:
        lines.append(f"- **Across the study's seeds** (one data build and one SFT; reward model and PPO trained per "
                     f"seed), PPO's last snapshot minus SFT, paired on the same prompts: gold win rate {win}; "
                     f"gold {gold or 'n/a'}.")
    lines.append(f"- {last['method']}: gold win rate vs the reference {_win_text(last)}, SFT {_win_text(sft)}: "
                 f"{verdict} SFT (95% CIs){scope}. Reward-model score {_fmt(sft.get('rm_score'))} -> "
                 f"{_fmt(last.get('rm_score'))}, gold {_fmt(sft.get('gold'))} -> {_fmt(last.get('gold'))}, "
                 f"KL {_fmt(last.get('kl'))}.")
    paired = _paired_lines(vs_sft or {}, last["method"], scope)
    if paired:
        lines[-1] = lines[-1].replace(f"{verdict} SFT (95% CIs){scope}", f"{verdict} SFT by the two unpaired 95% CIs")
        lines += paired[:1]
    bon = [row for row in table if str(row.get("method", "")).startswith("best-of-")]
    if bon:
        b = bon[-1]
        lines.append(f"- {b['method']} by the reward model (no training): gold {_fmt(sft.get('gold'))} -> "
                     f"{_fmt(b.get('gold'))}, reward-model score {_fmt(b.get('rm_score'))}. If best-of-n does not "
                     "raise gold, no optimizer of this reward model will at this KL.")
    control = by.get("PPO on gold (control)")
    if control:
        lines.append(f"- PPO with the same settings against the gold score itself: gold {_fmt(control.get('gold'))}, "
                     f"win rate {_win_text(control)}, KL {_fmt(control.get('kl'))}: what these PPO settings can do "
                     "with a perfect reward.")
        lines += _bottleneck_lines((vs_sft or {}).get(last["method"]), (vs_sft or {}).get(control["method"]))
    return lines + paired[1:] + [""]


def _bottleneck_lines(ppo: dict | None, control: dict | None) -> list[str]:
    """Optimizer or reward model? From the paired gold gains over SFT of PPO on the reward model and of the
    gold-reward control (both from vs_sft.json); nothing when either is missing."""
    if not ppo or not control:
        return []
    p, c = ppo["gold"], control["gold"]
    head = f"- Paired gold gain over SFT: PPO on gold {_gain_text(c)}, PPO on the reward model {_gain_text(p)}. "
    if c["lo"] > 0 and p["lo"] <= 0:
        return [head + "These PPO settings raise gold when gold is the reward and not through the reward model: "
                "the limit is what the reward model rewards (the on-policy check below), not the optimizer."]
    if c["lo"] <= 0:
        return [head + "Even the gold reward does not raise gold clearly at these settings: the optimizer or its "
                "budget is a limit before the reward model is."]
    return [head + "Both raise gold clearly."]


def _on_policy_lines(r: RunReader) -> list[str]:
    """eval-policy's on-policy check (simulated world): does the reward model rank the SFT policy's own samples
    like gold, and which parts of gold does its score follow?"""
    check = _read_json(r.root / "eval-policy" / "on_policy_reward.json")
    if not check or not check.get("agreement", {}).get("pairs"):
        return []
    a, rm, gold = check["agreement"], check.get("corr_rm", {}), check.get("corr_gold", {})
    lines = ["**Does the reward model rank the policy's own samples?**", "",
             f"- On {_fmt(a['pairs'], 0)} within-prompt pairs of SFT samples ({check.get('samples_per_prompt')} per "
             f"prompt) it orders the pair as gold does {_fmt(a.get('accuracy'))} [{_fmt(a.get('accuracy_ci_low'))}, "
             f"{_fmt(a.get('accuracy_ci_high'))}] of the time (0.5 is chance). This, not accuracy on human pairs, "
             "is what best-of-n and PPO depend on.", *_implied_rho_line(a), "",
             "Within-prompt correlation of each score with parts of gold (mean over prompts):", ""]
    feats = list(rm)
    lines += _table(["score", *feats], [["reward model", *[rm[f] for f in feats]],
                                        ["gold", *[gold.get(f) for f in feats]],
                                        ["(mean value)", *[check.get("mean", {}).get(f) for f in feats]]])
    return lines


def _implied_rho_line(a: dict) -> list[str]:
    """The within-prompt correlation with gold that the agreement implies (`implied_correlation`), if recorded."""
    if a.get("implied_rho") is None:
        return []
    return [f"  For jointly normal scores that is a correlation of {_fmt(a['implied_rho'])} "
            f"[{_fmt(a.get('implied_rho_ci_low'))}, {_fmt(a.get('implied_rho_ci_high'))}] with gold within a prompt: "
            "best-of-n by the reward model, and to first order PPO through it, gain that fraction of what they "
            "would gain against gold itself."]


def _gold_parts_lines(r: RunReader) -> list[str]:
    """eval-policy's gold_parts.json (simulated world): what each method changes in its TL;DRs."""
    parts = _read_json(r.root / "eval-policy" / "gold_parts.json")
    if not parts:
        return []
    feats = list(next(iter(parts.values())))
    lines = ["**What each method changes in the text**: the mean per response of gold's parts (coverage of the "
             "post's facts, precision, facts the post lacks, facts stated, words).", ""]
    return lines + _table(["method", *feats], [[method, *[v.get(f) for f in feats]] for method, v in parts.items()])


def _policy_section(r: RunReader) -> list[str]:
    lines = ["## 3. Policies: SFT, PPO, best-of-n, RLOO/GRPO, goal tokens and input steering", ""]
    sft = r.metrics("sft")
    if sft:
        lines += [f"SFT: {_fmt(sft.get('sft/params'), 0)} parameters, {_fmt(sft.get('sft/steps'), 0)} steps, final eval loss "
                  f"{_fmt(sft.get('sft/eval/loss', sft.get('sft/sft/eval/loss')))}. {r.provenance('sft')}", ""]
    ppo_curve = [row for row in r.curve("ppo") if "objective/scores" in row]
    for stage, target in (("sft", "make sft"), ("ppo", "make ppo"), ("eval-policy", "make eval-policy")):
        if not r.done(stage):
            lines += [f"_Stage `{stage}` has not run in this run (`{target}`): its rows are missing below._", ""]
    if ppo_curve:
        last = ppo_curve[-1]
        lines += [f"PPO: {len(ppo_curve)} updates; last update: reward-model score {_fmt(last.get('objective/scores'))}, "
                  f"gold {_fmt(last.get('objective/gold'))}, KL {_fmt(last.get('objective/kl'))}. {r.provenance('ppo')}", ""]
    table = _side_by_side(r)
    if table:
        lines += ["### The side-by-side table", "", r.provenance("eval-policy"), r.provenance("steer"), "",
                  "Held-out posts; reward-model score is normalized (reference TL;DRs average 0); gold is the "
                  "simulator's hidden quality; win rate is against the reference TL;DR.", ""]
        cols = ["method", "rm_score", "gold", "gold_win_rate", "kl", "rouge_l", "length", "no_eos_rate",
                "weights_changed", "compute"]
        if not r.has_gold:
            cols = [c for c in cols if not c.startswith("gold")]
        rows = []
        for row in table:
            ci = row.get("gold_win_ci")
            win = row.get("gold_win_rate")
            win_text = f"{_fmt(win)} [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci and win is not None else _fmt(win)
            values = {**row, "gold_win_rate": win_text}
            rows.append([values.get(c) for c in cols])
        lines += _table(cols, rows)
    if r.has_gold:
        lines += _policy_verdict(table, _read_json(r.root / "eval-policy" / "vs_sft.json"), r.study)
        lines += _on_policy_lines(r)
        lines += _gold_parts_lines(r)
    elif table:
        lines += ["_No gold score here: the methods are compared by the reward model, which is what PPO and "
                  "best-of-n optimize, so a higher score is not evidence of better summaries; ROUGE-L against the "
                  "author's TL;DR is the only reference-based column._", ""]
    for png, caption in (("eval-policy/gold_vs_sqrt_kl.png", "Gold score against sqrt(KL) (over-optimization curves)"),
                         ("eval-policy/proxy_vs_gold.png", "Proxy (reward model) and gold score as PPO goes on")):
        if (r.root / png).is_file():
            lines += [f"{caption}:", "", f"![{caption}]({png})", ""]
    return lines


def _steer_section(r: RunReader) -> list[str]:
    m = r.metrics("steer")
    lines = ["## 4. Input-only steering: weights frozen, input optimized", "", r.provenance("steer"), ""]
    if not m:
        return lines + ["No steering results.", ""]
    # steer/side/* repeat the side-by-side table above; keep the steering measurements themselves.
    keys = sorted(k for k in m if k.startswith("steer/") and not k.startswith("steer/side/")
                  and isinstance(m[k], (int, float)))
    lines += _table(["metric", "value"], [[k, m[k]] for k in keys])
    for png in sorted((r.root / "steer").glob("*.png")):
        lines += [f"![{png.stem}](steer/{png.name})", ""]
    return lines


def _samples_section(r: RunReader) -> list[str]:
    lines = ["## 5. Samples", ""]
    for stage, key in (("sft", "sft/samples"), ("ppo", "ppo/samples"), ("steer", "steer/samples")):
        t = r.table(stage, key)
        if not t or not t["rows"]:
            continue
        lines += [f"### {key}", ""]
        for row in t["rows"][:3]:
            record = dict(zip(t["columns"], row))
            prompt = str(record.get("prompt", ""))
            lines += ["```", prompt[-400:]] + [f"{k}: {v}" for k, v in record.items() if k != "prompt"] + ["```", ""]
    return lines


def _timing_section(r: RunReader) -> tuple[list[str], list[tuple[str, float]]]:
    rows = []
    for done in sorted(r.root.glob("*/DONE.json")):
        info = json.loads(done.read_text())
        rows.append((info["stage"], float(info.get("seconds", 0))))
    order = ["scrape", "build-data", "pretrain", "sft", "train-reward", "eval-reward", "ppo", "eval-policy", "steer",
             "study"]
    rows.sort(key=lambda x: order.index(x[0]) if x[0] in order else len(order))
    lines = ["## 6. Wall time per stage", ""]
    lines += _table(["stage", "seconds"], [[s, round(t, 1)] for s, t in rows] + [["total", round(sum(t for _, t in rows), 1)]])
    return lines, rows


def _plot_timings(rows: list[tuple[str, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh([s for s, _ in rows][::-1], [t / 60 for _, t in rows][::-1], color="#4477aa")
    ax.set_xlabel("minutes")
    ax.set_title("Wall time per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(run_root: str | Path) -> Path:
    """Write `<run_root>/REPORT.md` (and `timings.png`) from the stage outputs; returns the report path."""
    r = RunReader(Path(run_root))
    lines = [f"# upvote-rlhf report: run `{r.root.name}`", "",
             "RLHF from Reddit upvotes: what can a reward learned from votes teach a summarizer, and can a frozen "
             "model be steered by its input alone? Numbers below come from this run's stage outputs; each section "
             "names the stage, config, seed and commit that produced them.", ""]
    if r.source and not r.has_gold:
        lines += [f"_Source `{r.source}`: real votes have no hidden gold score, so the gold-only parts (gold agreement "
                  "of the pair rules, reward model vs gold, the gold-reward PPO control, gold win rates) are "
                  "skipped; everything else is shown._", ""]
    lines += _study_section(r) + _data_section(r) + _reward_section(r) + _policy_section(r) + _steer_section(r)
    lines += _samples_section(r)
    timing_lines, rows = _timing_section(r)
    lines += timing_lines
    if rows:
        _plot_timings(rows, r.root / "timings.png")
        lines += ["![timings](timings.png)", ""]
    path = r.root / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
