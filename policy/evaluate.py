"""Policy evaluation on held-out posts: one row per method in the side-by-side table.

    python -m pipelines eval-policy --config configs/demo.yaml

Every method answers the same held-out prompts (the SFT rows' test split) and is measured the same way:
reward-model score (normalized: reference TL;DRs average 0), gold score (simulated world only), KL to the
SFT policy, win rate against the reference TL;DR judged by the reward model and by gold (95% Wilson CIs
over prompts), ROUGE-L F1 against the reference, response length in policy tokens (EOS included) and the
share of responses that never emitted EOS.

Two kinds of rows:
- a policy (SFT, PPO snapshots, RLOO/GRPO, ...): `samples_per_prompt` samples per prompt at the eval
  temperature; KL = mean over samples of sum_t [log p(y_t) - log q(y_t)] with p the policy and q the SFT
  policy, both at that temperature (the same quantity PPO's `objective/kl` estimates during training).
- best-of-n over the SFT policy: ONE pool of S = max(n) samples per prompt serves every n. For each prompt
  the expected value of a metric under "draw n of the S samples without replacement, keep the
  reward-model's favourite" is a weighted mean over the pool with order-statistic weights
  C(rank-1, n-1) / C(S, n) (rank 1 = lowest RM score), which uses every sample instead of one draw per n.
  KL is the analytic log n - (n-1)/n (relative to the SFT policy at the eval temperature). n = 1 gives
  uniform weights: that is the SFT row.

Row schema (`ROW_KEYS`, shared with the steer stage, which appends rows to the same table): `method`,
`rm_score`, `gold`, `gold_win_rate`, `gold_win_ci` [lo, hi], `rm_win_rate`, `kl`, `rouge_l`, `length`,
`no_eos_rate`, `weights_changed`, `compute` (what produced the responses, in words), `seconds` (wall
seconds that method cost end to end: training up to that policy plus sampling and scoring here). Gold
fields are None on real data.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.best_of_n import analytic_kl
from policy.sampling import forward_logprobs, generate, left_pad_prompts
from reward_model.calibration import bootstrap_means, pairwise_correct, wilson_interval

RewardFn = Callable[[list[str], list[str]], "torch.Tensor | Sequence[float]"]
GoldFn = Callable[[str, str], float]  # (post_text, summary) -> gold, e.g. data.sim.gold.gold_score

ROW_KEYS = ("method", "rm_score", "gold", "gold_win_rate", "gold_win_ci", "rm_win_rate", "kl", "rouge_l", "length",
            "no_eos_rate", "weights_changed", "compute", "seconds")


class EvalPolicyConfig(BaseModel):
    """Held-out evaluation of the SFT policy, PPO snapshots, best-of-n and the RLOO/GRPO baselines."""

    model_config = ConfigDict(extra="forbid")

    split: str = Field("test", description="Split of the SFT rows whose prompts are evaluated (held out from PPO).")
    max_prompts: int = Field(64, ge=1, description="Evaluate at most this many prompts of the split (seeded choice).")
    samples_per_prompt: int = Field(1, ge=1, description="Responses sampled per prompt for each policy row.")
    best_of_n: list[int] = Field(
        [1, 2, 4, 8, 16],
        description="n values for best-of-n over the SFT policy (1..64); one pool of max(n) samples per prompt "
        "serves them all. Empty: no best-of-n rows (the SFT row then uses samples_per_prompt samples).",
    )
    bon_missing_eos_penalty: float | None = Field(
        None, description="Reward-model score used to RANK a no-EOS sample in best-of-n; None ranks by its score."
    )
    temperature: float | None = Field(
        None, gt=0.0, description="Sampling temperature of every row; None = ppo.temperature (KLs comparable to PPO's)."
    )
    response_length: int | None = Field(None, ge=1, description="New tokens per response; None = ppo.response_length.")
    max_prompt_length: int | None = Field(None, ge=1, description="Prompt tokens kept; None = ppo.max_prompt_length.")
    batch_size: int = Field(32, ge=1, description="Sequences per generation / log-prob chunk.")
    ppo_snapshots: bool = Field(
        True, description="Evaluate every saved PPO snapshot (over-optimization curve); False: only the final policy."
    )
    n_table_samples: int = Field(4, ge=0, description="Prompts whose responses (every method) go to the samples table.")
    seed: int = Field(0, description="Seed of the prompt choice and of sampling; unset in an experiment config = "
                      "run.seed.")

    @field_validator("best_of_n")
    @classmethod
    def _check_n(cls, values: list[int]) -> list[int]:
        bad = [n for n in values if not 1 <= n <= 64]
        if bad:
            raise ValueError(f"eval_policy.best_of_n values must lie in 1..64, got {bad}")
        return sorted(set(values))


# ----------------------------------------------------------------------------------------------------------
# metrics on plain numbers (unit-tested on hand-made values)
# ----------------------------------------------------------------------------------------------------------
def win_rate(scores: np.ndarray, reference: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, tuple[float, float]]:
    """Share of prompts where the response beats the reference (ties count 1/2), with a 95% Wilson CI.

    scores: [B, S] (S responses per prompt) or [B]; reference: [B]; weights: [B, S] rows summing to 1
    (default uniform). Each prompt contributes its expected win in [0, 1], so n in the CI is B prompts.
    """
    per_prompt = per_prompt_win(scores, reference, weights)  # [B]
    n = len(per_prompt)
    return float(per_prompt.mean()), wilson_interval(float(per_prompt.sum()), n)


def per_prompt_win(scores: np.ndarray, reference: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """[B] expected win of each prompt's responses against its reference (ties count 1/2); shapes as in
    `win_rate`."""
    scores = np.asarray(scores, float)
    scores = scores[:, None] if scores.ndim == 1 else scores
    reference = np.asarray(reference, float)
    assert scores.shape[0] == reference.shape[0], (scores.shape, reference.shape)
    wins = pairwise_correct(scores, np.broadcast_to(reference[:, None], scores.shape))  # [B, S]
    return weighted_per_prompt(wins, weights)


def paired_gain(values: np.ndarray, baseline: np.ndarray, n_boot: int = 4000, seed: int = 0) -> dict[str, float]:
    """Mean per-prompt gain of a method over a baseline on the SAME prompts, with a 95% percentile bootstrap
    interval over prompts and the share of resamples whose mean gain is <= 0 (a one-sided p-value).

    Why paired: two win rates with overlapping Wilson intervals can still differ clearly when both are
    measured on the same prompts, because most of each interval's width is which prompts are easy; the
    per-prompt difference removes that. values, baseline: [B] per-prompt numbers (e.g. expected gold win).
    """
    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    assert values.shape == baseline.shape and values.ndim == 1, (values.shape, baseline.shape)
    diff = values - baseline
    boots = bootstrap_means(diff, n_boot, seed)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": float(diff.mean()), "lo": float(lo), "hi": float(hi), "p_not_above": float((boots <= 0).mean()),
            "prompts": float(len(diff))}


def per_prompt_gold(res: "Responses", held: "HeldOut", weights: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """[B] expected gold win against the reference TL;DR and [B] expected gold, per prompt (None without gold):
    the per-prompt numbers `paired_gain` compares between methods."""
    if res.gold is None or held.ref_gold is None:
        return None
    grid = res.grid(res.gold)
    return {"gold_win": per_prompt_win(grid, held.ref_gold, weights), "gold": weighted_per_prompt(grid, weights)}


def weighted_per_prompt(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """[B, S] values -> [B] per-prompt means under `weights` [B, S] (uniform when None)."""
    values = np.asarray(values, float)
    if weights is None:
        return values.mean(axis=1)
    assert weights.shape == values.shape, (weights.shape, values.shape)
    return (values * weights).sum(axis=1)


def kl_estimate(policy_logprobs: np.ndarray, ref_logprobs: np.ndarray) -> float:
    """KL(policy || ref) from samples of the policy: mean over samples of the summed per-token
    log p - log q ([N] sequence log-probs each). Unbiased (k1); a single sample can be negative."""
    policy_logprobs, ref_logprobs = np.asarray(policy_logprobs, float), np.asarray(ref_logprobs, float)
    assert policy_logprobs.shape == ref_logprobs.shape, (policy_logprobs.shape, ref_logprobs.shape)
    return float((policy_logprobs - ref_logprobs).mean())


def best_of_n_weights(scores: np.ndarray, n: int) -> np.ndarray:
    """[B, S] weights: probability that each pool sample is the one kept by best-of-n, n drawn from the S
    samples of its prompt without replacement. The sample of ascending rank i (1-based) is the maximum
    of a random n-subset with probability C(i-1, n-1) / C(S, n); ties are broken by position."""
    scores = np.asarray(scores, float)
    _, pool = scores.shape
    if not 1 <= n <= pool:
        raise ValueError(f"best-of-{n} needs 1 <= n <= pool size {pool}")
    by_rank = np.array([math.comb(i - 1, n - 1) for i in range(1, pool + 1)], float) / math.comb(pool, n)  # [S]
    ranks = np.argsort(np.argsort(scores, axis=1, kind="stable"), axis=1)  # [B, S] 0-based ascending rank
    return by_rank[ranks]


def rouge_l(predictions: list[str], references: list[str]) -> np.ndarray:
    """ROUGE-L F1 of each prediction against its reference ([N]; 0 for an empty prediction)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return np.array([scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)])


# ----------------------------------------------------------------------------------------------------------
# sampling and scoring
# ----------------------------------------------------------------------------------------------------------
@dataclass
class HeldOut:
    """The evaluated prompts: B prompts, their post texts (what gold reads) and reference TL;DRs."""

    prompts: list[str]
    post_texts: list[str]
    references: list[str]
    ref_rm: np.ndarray  # [B] reward-model score of the reference TL;DR
    ref_gold: np.ndarray | None  # [B] gold of the reference TL;DR (None on real data)

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class Responses:
    """S sampled responses per prompt, flattened prompt-major (row b*S + s), with everything measured on them."""

    texts: list[str]  # [B*S]
    lengths: np.ndarray  # [B*S] response tokens, EOS included
    has_eos: np.ndarray  # [B*S] bool
    logprob: np.ndarray  # [B*S] sum_t log p(y_t) under the sampling policy (eval temperature)
    ref_logprob: np.ndarray  # [B*S] the same under the SFT policy
    seconds: float  # sampling + scoring wall time
    per_prompt: int  # S
    rm: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [B*S]
    gold: np.ndarray | None = None  # [B*S]
    rouge: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [B*S]
    generate_seconds: float = 0.0  # of `seconds`, the sampler's share (B*S*response_length tokens drawn)

    def grid(self, values: np.ndarray) -> np.ndarray:
        """[B*S] -> [B, S]."""
        return np.asarray(values, float).reshape(-1, self.per_prompt)


def settings(cfg: EvalPolicyConfig, temperature: float, response_length: int, max_prompt_length: int) -> EvalPolicyConfig:
    """`cfg` with its None fields (temperature, lengths) filled from the PPO section."""
    return cfg.model_copy(update={
        "temperature": cfg.temperature or temperature,
        "response_length": cfg.response_length or response_length,
        "max_prompt_length": cfg.max_prompt_length or max_prompt_length,
    })


@torch.no_grad()
def sample_responses(
    policy: PreTrainedModel,
    sft: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    held: HeldOut,
    per_prompt: int,
    cfg: EvalPolicyConfig,
    reward_fn: RewardFn,
    gold_fn: GoldFn | None,
    desc: str = "sampling",
) -> Responses:
    """Sample `per_prompt` responses per held-out prompt from `policy`, with their log-probs under the policy
    and the SFT policy, then score them (reward model, gold, ROUGE-L). `cfg` must have been `settings`-filled."""
    assert cfg.temperature and cfg.response_length and cfg.max_prompt_length, "fill cfg with evaluate.settings()"
    started = time.perf_counter()
    policy.eval()
    sft.eval()
    repeated = [i for i in range(len(held)) for _ in range(per_prompt)]  # prompt-major
    texts: list[str] = []
    lengths, has_eos, logprob, ref_logprob = [], [], [], []
    generate_seconds = 0.0
    for start in tqdm(range(0, len(repeated), cfg.batch_size), desc=desc, leave=False):
        rows = repeated[start : start + cfg.batch_size]
        ids, mask = left_pad_prompts(tokenizer, [held.prompts[i] for i in rows], cfg.max_prompt_length)  # [b, Q]
        t0 = time.perf_counter()
        gen = generate(policy, ids, mask, cfg.response_length, cfg.temperature, tokenizer.eos_token_id,
                       tokenizer.pad_token_id, tokenizer)  # decoding the texts waits for the device
        generate_seconds += time.perf_counter() - t0
        # log q(y) under the SFT policy at the same temperature, on the same (truncated) tokens: [b, R] -> [b]
        ref = forward_logprobs(sft, gen.query_ids, gen.query_mask, gen.response_ids, gen.response_mask, cfg.temperature)
        texts.extend(gen.texts)
        lengths.append(gen.response_mask.sum(1).cpu())
        has_eos.append(gen.has_eos.cpu())
        logprob.append(gen.logprobs.sum(1).cpu())
        ref_logprob.append(ref.sum(1).cpu())
    out = Responses(texts, torch.cat(lengths).numpy().astype(float), torch.cat(has_eos).numpy(),
                    torch.cat(logprob).double().numpy(), torch.cat(ref_logprob).double().numpy(), 0.0, per_prompt)
    score_responses(out, held, repeated, reward_fn, gold_fn)
    out.seconds = time.perf_counter() - started
    out.generate_seconds = generate_seconds
    return out


def score_responses(out: Responses, held: HeldOut, rows: list[int], reward_fn: RewardFn, gold_fn: GoldFn | None) -> None:
    """Fill `out.rm`, `out.gold`, `out.rouge` for responses whose prompt indices are `rows`."""
    prompts = [held.prompts[i] for i in rows]
    out.rm = torch.as_tensor(reward_fn(prompts, out.texts), dtype=torch.float32).reshape(-1).double().numpy()
    if out.rm.shape[0] != len(out.texts):
        raise ValueError(f"reward_fn returned {out.rm.shape[0]} scores for {len(out.texts)} responses")
    out.gold = np.array([gold_fn(held.post_texts[i], t) for i, t in zip(rows, out.texts)]) if gold_fn else None
    out.rouge = rouge_l(out.texts, [held.references[i] for i in rows])


def make_row(
    method: str,
    res: Responses,
    held: HeldOut,
    kl: float,
    weights_changed: bool,
    compute: str,
    seconds: float,
    weights: np.ndarray | None = None,
) -> dict:
    """One table row from scored responses; `weights` [B, S] turns per-sample values into per-prompt
    expectations (best-of-n), None = uniform."""
    mean = lambda v: float(weighted_per_prompt(res.grid(v), weights).mean())  # noqa: E731
    rm_win, _ = win_rate(res.grid(res.rm), held.ref_rm, weights)
    gold = gold_win = gold_ci = None
    if res.gold is not None and held.ref_gold is not None:
        gold = mean(res.gold)
        gold_win, ci = win_rate(res.grid(res.gold), held.ref_gold, weights)
        gold_ci = [ci[0], ci[1]]
    row = {
        "method": method, "rm_score": mean(res.rm), "gold": gold, "gold_win_rate": gold_win, "gold_win_ci": gold_ci,
        "rm_win_rate": rm_win, "kl": float(kl), "rouge_l": mean(res.rouge), "length": mean(res.lengths),
        "no_eos_rate": mean(~res.has_eos), "weights_changed": bool(weights_changed), "compute": compute,
        "seconds": float(seconds),
    }
    assert tuple(row) == ROW_KEYS
    return row


def reference_row(held: HeldOut, tokenizer: PreTrainedTokenizerBase) -> dict:
    """The reference TL;DRs themselves (gold of the target the win rates are measured against)."""
    lengths = np.array([len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1 for r in held.references], float)
    return {
        "method": "reference TL;DR", "rm_score": float(held.ref_rm.mean()),
        "gold": float(held.ref_gold.mean()) if held.ref_gold is not None else None,
        "gold_win_rate": None, "gold_win_ci": None, "rm_win_rate": None, "kl": None, "rouge_l": 1.0,
        "length": float(lengths.mean()), "no_eos_rate": 0.0, "weights_changed": False, "compute": "written by the authors",
        "seconds": 0.0,
    }


def best_of_n_selection(pool: Responses, ns: list[int], missing_eos_penalty: float | None) -> dict[int, np.ndarray]:
    """n -> [B, S] weights of best-of-n over `pool`, ranked by the reward model (a no-EOS sample ranked as
    `missing_eos_penalty` when given)."""
    ranking = pool.grid(pool.rm).copy()
    if missing_eos_penalty is not None:
        ranking[~pool.grid(pool.has_eos).astype(bool)] = missing_eos_penalty
    return {n: best_of_n_weights(ranking, n) for n in ns}


def best_of_n_rows(pool: Responses, held: HeldOut, selection: dict[int, np.ndarray]) -> list[dict]:
    """Best-of-n rows from one SFT pool, one per n of `selection` (`best_of_n_selection`'s weights)."""
    return [make_row(f"best-of-{n}", pool, held, analytic_kl(n), False, f"{n} samples/prompt",
                     pool.seconds * n / pool.per_prompt, weights)
            for n, weights in selection.items()]


def policy_kl(res: Responses) -> float:
    return kl_estimate(res.logprob, res.ref_logprob)


@torch.no_grad()
def weights_changed(model: PreTrainedModel, reference: PreTrainedModel) -> bool:
    """True when any parameter of `model` differs from the same-named one of `reference` (or names differ)."""
    ref = reference.state_dict()
    state = model.state_dict()
    if state.keys() != ref.keys():
        return True
    return any(not torch.equal(v, ref[k]) for k, v in state.items())


def format_rows(rows: list[dict]) -> str:
    """The table for the terminal: CIs inline, numbers to 3 decimals."""
    def fmt(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    columns = ["method", "rm_score", "gold", "gold_win", "rm_win", "kl", "rouge_l", "length", "no_eos", "changed",
               "seconds", "compute"]
    cells = []
    for r in rows:
        ci = r.get("gold_win_ci")
        win = fmt(r.get("gold_win_rate")) + (f" [{ci[0]:.2f},{ci[1]:.2f}]" if ci else "")
        cells.append([fmt(r["method"]), fmt(r["rm_score"]), fmt(r["gold"]), win, fmt(r["rm_win_rate"]), fmt(r["kl"]),
                      fmt(r["rouge_l"]), f"{r['length']:.1f}", fmt(r["no_eos_rate"]), fmt(r["weights_changed"]),
                      f"{r['seconds']:.0f}", fmt(r["compute"])])
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) if i in (0, len(columns) - 1) else v.rjust(w)  # noqa: E731
                                  for i, (v, w) in enumerate(zip(vals, widths)))
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def slug(method: str) -> str:
    """'PPO step 40' -> 'ppo_step_40' (metric namespaces)."""
    return "".join(c if c.isalnum() else "_" for c in method.lower()).strip("_").replace("__", "_")
