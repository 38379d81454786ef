"""Statistics for reward-model evaluation: Wilson intervals, reliability bins, ECE, the reliability plot.

Calibration of a Bradley-Terry model: it predicts P(chosen beats rejected) = sigmoid(r_c - r_r). Every
held-out label says "chosen won", so the predictions are folded to the side the model favours:
confidence = max(p, 1 - p), correct = (p > 0.5). A calibrated model is right 70% of the time when it is
70% confident; ECE = sum over bins of (n_bin / N) * |accuracy_bin - confidence_bin|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (good at small n and near 0/1, unlike the normal one)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_means(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """[n_boot] means of `values` ([N] per-item numbers) resampled with replacement: the percentile bootstrap
    behind every "mean with a 95% interval over items" in the project."""
    values = np.asarray(values, float)
    boot = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    return values[boot].mean(axis=1)


def pairwise_correct(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """1 where chosen scores higher, 0 where lower, 0.5 on ties (a coin flip in expectation)."""
    chosen, rejected = np.asarray(chosen, float), np.asarray(rejected, float)
    return np.where(chosen > rejected, 1.0, np.where(chosen < rejected, 0.0, 0.5))


@dataclass
class Reliability:
    """Per-bin confidence, accuracy and count of folded predictions, plus the ECE."""

    bin_edges: np.ndarray  # [n_bins + 1] over [0.5, 1]
    confidence: np.ndarray  # [n_bins], NaN for empty bins
    accuracy: np.ndarray  # [n_bins]
    count: np.ndarray  # [n_bins]
    ece: float

    def rows(self) -> list[dict]:
        return [
            {
                "bin_low": float(lo),
                "bin_high": float(hi),
                "confidence": float(c),
                "accuracy": float(a),
                "n": int(n),
            }
            for lo, hi, c, a, n in zip(
                self.bin_edges[:-1], self.bin_edges[1:], self.confidence, self.accuracy, self.count
            )
            if n > 0
        ]


def reliability(p_chosen: np.ndarray, n_bins: int = 10) -> Reliability:
    """Fold P(chosen) to the favoured side and bin it (module docstring)."""
    p = np.asarray(p_chosen, float)
    conf = np.maximum(p, 1 - p)  # [N] in [0.5, 1]
    correct = np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))  # [N]
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] / max(len(p), 1) * np.abs(mean_acc[filled] - mean_conf[filled])))
    return Reliability(edges, mean_conf, mean_acc, count, ece)


def plot_reliability(rel: Reliability, path: str | Path, title: str = "Reward model calibration") -> Path:
    """Reliability diagram (accuracy vs confidence, diagonal = calibrated) with counts below, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = rel.count > 0
    centres = (rel.bin_edges[:-1] + rel.bin_edges[1:]) / 2
    width = rel.bin_edges[1] - rel.bin_edges[0]
    ax.plot([0.5, 1], [0.5, 1], "k--", lw=1, label="calibrated")
    ax.bar(centres[filled], rel.accuracy[filled], width=width * 0.9, alpha=0.6, label="observed accuracy")
    ax.plot(rel.confidence[filled], rel.accuracy[filled], "o-", color="C3", label="mean confidence")
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction where the favoured side won")
    ax.set_title(f"{title} (ECE {rel.ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar(centres, rel.count, width=width * 0.9, color="grey")
    ax_n.set_xlabel("confidence max(p, 1-p), p = sigmoid(r_chosen - r_rejected)")
    ax_n.set_ylabel("pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
