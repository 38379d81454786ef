"""Plots of the eval-policy stage (PNG, matplotlib Agg), read by the report and logged to W&B.

- `plot_gold_vs_sqrt_kl`: gold and proxy (reward-model) score against sqrt(KL to SFT) for PPO snapshots and
  best-of-n: the over-optimization curves of Gao et al. 2022 (their Fig. 1 uses d = sqrt(KL)).
- `plot_proxy_vs_gold`: the training-time proxy score and gold along PPO updates (`objective/scores`,
  `objective/gold` of the ppo stage's metrics.jsonl): a proxy that keeps rising while gold flattens or
  falls is reward hacking.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_PPO_STEP = re.compile(r"^PPO step (\d+)$")
_BON = re.compile(r"^best-of-(\d+)$")


def _series(rows: list[dict], key: str) -> dict[str, list[tuple[float, float, str]]]:
    """{family: [(sqrt_kl, value, label)]} for PPO snapshots (SFT at KL 0 first) and best-of-n."""
    out: dict[str, list[tuple[float, float, str]]] = {"PPO": [], "best-of-n": []}
    sft = next((r for r in rows if r["method"] == "SFT"), None)
    for r in rows:
        value, kl = r.get(key), r.get("kl")
        if value is None or kl is None:
            continue
        x = math.sqrt(max(kl, 0.0))
        if (m := _PPO_STEP.match(r["method"])) is not None:
            out["PPO"].append((x, value, m.group(1)))
        elif (m := _BON.match(r["method"])) is not None:
            out["best-of-n"].append((x, value, m.group(1)))
    if sft is not None and sft.get(key) is not None:
        out["PPO"].append((0.0, sft[key], "0"))
    for family in out:
        out[family].sort(key=lambda p: p[0] if family == "best-of-n" else int(p[2]))
    return out


def plot_gold_vs_sqrt_kl(rows: list[dict], path: str | Path, title: str = "") -> Path | None:
    """Gold (left) and reward-model score (right) vs sqrt(KL); PPO points labelled by update, best-of-n by n.
    Returns None when no row has a KL and a score."""
    panels = [("gold", "gold score"), ("rm_score", "reward-model score (proxy)")]
    panels = [(k, label) for k, label in panels if any(v for v in _series(rows, k).values())]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for family, style in (("PPO", "o-"), ("best-of-n", "s--")):
            pts = _series(rows, key)[family]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=family)
            for x, y, tag in pts:
                ax.annotate(tag, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ref = next((r for r in rows if r["method"] == "reference TL;DR" and r.get(key) is not None), None)
        if ref is not None:
            ax.axhline(ref[key], color="grey", lw=0.8, ls=":", label="reference TL;DR")
        ax.set_xlabel("sqrt(KL to SFT) [sqrt(nats)]")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Over-optimization: PPO updates (labels) and best-of-n (labels = n)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ppo_curve(metrics_rows: list[dict]) -> list[dict]:
    """PPO's per-update rows from a metrics.jsonl (last entry per step wins: a resumed run repeats steps)."""
    by_step: dict[int, dict] = {}
    for row in metrics_rows:
        if row.get("step") is not None and "objective/scores" in row:
            by_step[int(row["step"])] = row
    return [by_step[s] for s in sorted(by_step)]


def plot_proxy_vs_gold(metrics_rows: list[dict], path: str | Path) -> Path | None:
    """Proxy score (left axis) and gold (right axis) per PPO update, KL on a second panel; None without data."""
    curve = ppo_curve(metrics_rows)
    if not curve:
        return None
    steps = [r["step"] for r in curve]
    fig, (ax, ax_kl) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.plot(steps, [r["objective/scores"] for r in curve], color="tab:blue", label="proxy (reward model)")
    ax.set_xlabel("PPO update")
    ax.set_ylabel("reward-model score", color="tab:blue")
    lines, labels = ax.get_legend_handles_labels()
    if any(r.get("objective/gold") is not None for r in curve):
        ax2 = ax.twinx()
        ax2.plot(steps, [r.get("objective/gold") for r in curve], color="tab:orange", label="gold")
        ax2.set_ylabel("gold score", color="tab:orange")
        more = ax2.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    ax.legend(lines, labels, fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title("Proxy vs gold on PPO's rollouts")
    ax_kl.plot(steps, [r.get("objective/kl") for r in curve], color="tab:green")
    ax_kl.set_xlabel("PPO update")
    ax_kl.set_ylabel("KL to SFT (nats per response)")
    ax_kl.grid(alpha=0.3)
    ax_kl.set_title("KL")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
