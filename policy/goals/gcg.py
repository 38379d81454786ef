"""GCG target steering: find k inserted tokens that make a target token (or short string) the likeliest
continuation, the model's weights held fixed.

    python -m pipelines steer --config configs/demo.yaml      # the steering stage calls run / run_universal

Greedy Coordinate Gradient (Zou et al. 2023, after AutoPrompt, Shin et al. 2020): the loss is the target's
NLL; its gradient w.r.t. the one-hot indicator of each trigger token ranks replacement tokens to first
order; a batch of single-token swaps drawn from each position's top-k is then evaluated *exactly* (one
batched forward) and the best swap is kept. The part of the prompt before the trigger never changes, so
its KV cache is computed once. Universal mode optimizes one trigger for many posts (sum of losses) and is
judged on held-out posts only.

Shape of the module follows nanoGCG: `GCGConfig` in, `GCGResult` with per-step history out, `run(...)`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.goals.common import (
    LogFn,
    Position,
    SteerCase,
    encode,
    frozen,
    not_allowed_token_ids,
    prepare_case,
    single_token_id,
    split_prompt,
    target_loss_from_hidden,
    trigger_perplexity,
    word_token_ids,
)


class GCGConfig(BaseModel):
    """Search settings of GCG (defaults sized for the tiny CPU demo policy)."""

    model_config = ConfigDict(extra="forbid")

    n_tokens: int = Field(10, ge=1, description="Trigger length k (tokens inserted into the prompt).")
    position: Position = Field(
        "suffix", description="Where the trigger goes: prefix (before SUBREDDIT:), before_tldr, or suffix."
    )
    num_steps: int = Field(100, ge=1, description="Maximum GCG steps (each: one gradient + one candidate batch).")
    search_width: int = Field(128, ge=1, description="Candidate swaps sampled and evaluated exactly per step.")
    topk: int = Field(64, ge=1, description="Replacement tokens per position taken from the gradient ranking.")
    n_replace: int = Field(1, ge=1, description="Positions changed in each candidate.")
    batch_size: int | None = Field(
        None, ge=1, description="Candidates per forward pass (None: the whole batch at once)."
    )
    use_prefix_cache: bool = Field(True, description="Compute the KV cache of the text before the trigger once.")
    filter_ids: bool = Field(
        True, description="Keep only candidates whose decode->encode round trip gives the same ids."
    )
    allow_non_ascii: bool = Field(False, description="Allow tokens whose text is not printable ASCII.")
    early_stop: bool = Field(True, description="Stop once the target is the argmax (success).")
    success_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="Universal mode: fraction of training posts that must succeed to stop."
    )
    init_token: str = Field(" x", description="Token repeated k times to initialize the trigger.")
    init_with_target: bool = Field(
        False,
        description="Initialize the trigger with the target's first token repeated k times (when it is allowed) "
        "instead of init_token: a warm start a model that copies from its context responds to.",
    )
    restarts: int = Field(
        0,
        ge=0,
        description="Further searches of num_steps each, from k random word tokens, while none has succeeded: "
        "a search stuck in a bad basin starts over instead of spending its steps there. The steps of every "
        "search count towards steps_to_success.",
    )
    seed: int = Field(0, description="Seed of candidate sampling.")
    show_progress: bool = Field(False, description="Show a tqdm bar over steps.")


@dataclass
class GCGStep:
    """One step of the search."""

    step: int
    loss: float  # mean target NLL of the kept trigger (over training posts in universal mode)
    success_rate: float  # fraction of training posts where the target is the argmax
    n_candidates: int  # candidates left after filtering and de-duplication
    seconds: float  # wall time of this step
    trigger: str


@dataclass
class TriggerEval:
    """A trigger judged on a set of posts."""

    n_posts: int
    success_rate: float
    mean_logprob: float  # log p(target | prompt with trigger), summed over target tokens
    mean_uplift: float  # the same minus log p(target | prompt without trigger)


@dataclass
class GCGResult:
    """The best trigger found and how the search went."""

    trigger_ids: list[int]
    trigger: str
    best_loss: float
    initial_loss: float
    success: bool
    steps_to_success: int | None  # steps run until success (None: never succeeded)
    seconds_to_success: float | None
    steps: int
    seconds: float
    seconds_per_step: float
    perplexity: float  # of the trigger under the frozen model, given the text before it
    train: TriggerEval | None = None
    heldout: TriggerEval | None = None
    history: list[GCGStep] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- loss pieces
def _onehot_grad(
    model: PreTrainedModel, cases: list[SteerCase], trigger: torch.Tensor
) -> tuple[torch.Tensor, float, float]:
    """Gradient of the summed target NLL w.r.t. the trigger's one-hot indicators: (k, V); loss, success."""
    emb = model.get_input_embeddings()
    onehot = torch.nn.functional.one_hot(trigger, emb.num_embeddings).to(emb.weight.dtype)  # (k, V)
    onehot.requires_grad_(True)
    total, wins = 0.0, 0
    for case in cases:
        trig_emb = onehot @ emb.weight  # (k, d): differentiable in the indicators
        rest = emb(torch.cat([case.after_ids, case.target_ids[:-1]]))  # (Ta + nt - 1, d)
        head = emb(case.uncached_before())  # (Tb, d) without a prefix cache, else (0, d)
        x = torch.cat([head, trig_emb, rest])[None]  # (1, L, d)
        hidden = model.base_model(inputs_embeds=x, cache=case.cache(1), use_cache=False).last_hidden_state
        loss, ok = target_loss_from_hidden(model, hidden[:, -case.target_ids.numel() :], case.target_ids)
        (loss.sum() / len(cases)).backward()
        total += float(loss.detach()) / len(cases)
        wins += int(ok)
    return onehot.grad, total, wins / len(cases)


@torch.no_grad()
def candidate_losses(
    model: PreTrainedModel, cases: list[SteerCase], candidates: torch.Tensor, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact loss of every candidate trigger, averaged over cases: (B,) loss and (B,) success fraction.

    candidates: (B, k). Each case is one batched forward over [trigger, after, target[:-1]] on top of the
    prefix cache; only the last n_target hidden states reach the LM head.
    """
    n = candidates.shape[0]
    bs = batch_size or n
    loss = torch.zeros(n, device=candidates.device)
    wins = torch.zeros(n, device=candidates.device)
    for case in cases:
        nt = case.target_ids.numel()
        tail = torch.cat([case.after_ids, case.target_ids[:-1]])  # (Ta + nt - 1,)
        for i in range(0, n, bs):
            c = candidates[i : i + bs]  # (b, k)
            head = case.uncached_before()[None].expand(c.shape[0], -1)  # (b, Tb) or (b, 0) with the cache
            ids = torch.cat([head, c, tail[None].expand(c.shape[0], -1)], dim=1)  # (b, L)
            hidden = model.base_model(input_ids=ids, cache=case.cache(c.shape[0]), use_cache=False)
            l, ok = target_loss_from_hidden(model, hidden.last_hidden_state[:, -nt:], case.target_ids)
            loss[i : i + bs] += l / len(cases)
            wins[i : i + bs] += ok.float() / len(cases)
    return loss, wins


def sample_candidates(
    trigger: torch.Tensor, grad: torch.Tensor, cfg: GCGConfig, banned: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """`search_width` triggers, each with `n_replace` positions swapped to one of that position's top-k
    tokens by -gradient (banned tokens masked out): (search_width, k)."""
    k = trigger.numel()
    grad = grad.clone()
    grad[:, banned] = float("inf")
    top = (-grad).topk(min(cfg.topk, grad.shape[1] - banned.numel()), dim=1).indices  # (k, topk)
    cands = trigger.repeat(cfg.search_width, 1)  # (W, k)
    n_rep = min(cfg.n_replace, k)
    pos = torch.rand(cfg.search_width, k, generator=gen).argsort(dim=1)[:, :n_rep]  # (W, n_rep)
    choice = torch.randint(0, top.shape[1], (cfg.search_width, n_rep), generator=gen)  # (W, n_rep)
    cands.scatter_(1, pos.to(trigger.device), top[pos, choice.to(top.device)])
    return cands


def retokenization_filter(tokenizer: PreTrainedTokenizerBase, candidates: torch.Tensor) -> torch.Tensor:
    """Candidates whose text encodes back to the same ids (batched in the fast tokenizer): (B', k)."""
    texts = tokenizer.batch_decode(candidates.tolist())
    again = tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows = candidates.tolist()
    keep = [i for i, (a, b) in enumerate(zip(again, rows)) if a == b]
    return candidates[keep]


# ----------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_trigger(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    target: str | int | list[int],
    trigger_ids: list[int],
    position: Position,
) -> TriggerEval:
    """Success rate and log-prob uplift of one trigger on `prompts` (direct, uncached forwards)."""
    trig = torch.tensor(trigger_ids, dtype=torch.long, device=model.device)
    succ, lps, ups = [], [], []
    with frozen(model):
        for p in prompts:
            case = prepare_case(model, tokenizer, p, target, position, use_prefix_cache=False)
            nt = case.target_ids.numel()
            row = []
            for t in (trig, trig[:0]):
                ids = case.full_ids(t)[None]
                logits = model(input_ids=ids).logits[0, -nt - 1 : -1].float()  # (nt, V)
                logp = torch.log_softmax(logits, -1).gather(-1, case.target_ids[:, None]).sum()
                row.append((float(logp), bool((logits.argmax(-1) == case.target_ids).all())))
            (lp_with, ok), (lp_without, _) = row
            succ.append(ok)
            lps.append(lp_with)
            ups.append(lp_with - lp_without)
    n = len(prompts)
    return TriggerEval(n, sum(succ) / n, sum(lps) / n, sum(ups) / n)


# ----------------------------------------------------------------------------------------- the search
def run(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: str | list[str],
    target: str | int | list[int],
    config: GCGConfig | None = None,
    log: LogFn | None = None,
    init_ids: list[int] | None = None,
) -> GCGResult:
    """Optimize one trigger for `prompts` (one post, or many: universal mode, sum of losses).

    `init_ids` warm-starts the search from a given trigger (k = its length) instead of `init_token` repeated.
    """
    cfg = config or GCGConfig()
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError("prompts is empty: GCG needs at least one prompt")
    if init_ids is not None and not init_ids:
        raise ValueError("init_ids is empty: give the trigger GCG should start from, or None")
    gen = torch.Generator().manual_seed(cfg.seed)
    with frozen(model):
        device = model.device
        banned = not_allowed_token_ids(tokenizer, cfg.allow_non_ascii).to(device)
        # 1. tokenize around the slot; the text before the trigger runs once (prefix KV cache)
        cases = [prepare_case(model, tokenizer, p, target, cfg.position, cfg.use_prefix_cache) for p in prompts]
        banned_set = set(banned.tolist())
        first_target = int(cases[0].target_ids[0])
        if init_ids is not None:
            trigger = torch.tensor(init_ids, dtype=torch.long, device=device)
        else:
            if cfg.init_with_target and first_target not in banned_set:
                init = first_target
            else:
                init = single_token_id(tokenizer, [cfg.init_token, " the", "."], banned_set)
            trigger = torch.full((cfg.n_tokens,), init, dtype=torch.long, device=device)
        init_loss, init_wins = candidate_losses(model, cases, trigger[None], cfg.batch_size)
        best_ids, best_loss, cur_loss = trigger.clone(), float(init_loss), float(init_loss)
        history: list[GCGStep] = []
        steps_to_success = seconds_to_success = None
        t0 = time.perf_counter()
        if cfg.early_stop and float(init_wins) >= cfg.success_fraction:
            steps_to_success, seconds_to_success = 0, 0.0
        words: list[int] = []  # restart tokens, listed on the first restart (most searches never restart)
        total_steps = cfg.num_steps * (1 + cfg.restarts)
        bar = tqdm(range(1, total_steps + 1), desc="gcg", disable=not cfg.show_progress)
        for step in bar:
            if steps_to_success is not None and cfg.early_stop:
                break
            if step > 1 and (step - 1) % cfg.num_steps == 0:
                # a restart: the search so far failed; start again from random words (best-ever is kept)
                words = words or word_token_ids(tokenizer, banned_set)
                pick = torch.randint(0, len(words), (trigger.numel(),), generator=gen)
                trigger = torch.tensor([words[int(i)] for i in pick], dtype=torch.long, device=device)
            ts = time.perf_counter()
            # 2. gradient of the target loss w.r.t. the one-hot trigger indicators: (k, V)
            grad, _, _ = _onehot_grad(model, cases, trigger)
            with torch.no_grad():
                # 3. sample swaps from each position's top-k by -gradient
                cands = sample_candidates(trigger, grad, cfg, banned, gen)
                # 4. drop candidates that do not survive decode->encode, duplicates, and the current trigger
                if cfg.filter_ids:
                    cands = retokenization_filter(tokenizer, cands)
                cands = torch.unique(cands, dim=0)
                cands = cands[(cands != trigger).any(1)]
                if cands.shape[0] == 0:
                    continue
                # 5. exact loss of every candidate (batched forward on the prefix cache)
                losses, wins = candidate_losses(model, cases, cands, cfg.batch_size)
                # 6. keep the best swap (even if worse than now: GCG moves every step); track the best ever
                j = int(losses.argmin())
                trigger, cur_loss, cur_win = cands[j].clone(), float(losses[j]), float(wins[j])
            if cur_loss < best_loss:
                best_ids, best_loss = trigger.clone(), cur_loss
            dt = time.perf_counter() - ts
            history.append(GCGStep(step, cur_loss, cur_win, int(cands.shape[0]), dt, tokenizer.decode(trigger)))
            if log is not None:
                log({"gcg/loss": cur_loss, "gcg/success_rate": cur_win, "gcg/n_candidates": cands.shape[0]}, step)
            bar.set_postfix(loss=f"{cur_loss:.3f}", win=f"{cur_win:.2f}")
            # 7. early stop once the target is the argmax (on enough posts in universal mode)
            if cur_win >= cfg.success_fraction and steps_to_success is None:
                steps_to_success, seconds_to_success = step, time.perf_counter() - t0
                best_ids, best_loss = trigger.clone(), cur_loss
        seconds = time.perf_counter() - t0
        before0 = encode(tokenizer, split_prompt(prompts[0], cfg.position)[0]).to(device)
        ppl = trigger_perplexity(model, tokenizer, before0, best_ids)
    n_steps = len(history)
    return GCGResult(
        trigger_ids=best_ids.tolist(),
        trigger=tokenizer.decode(best_ids),
        best_loss=best_loss,
        initial_loss=float(init_loss),
        success=steps_to_success is not None,
        steps_to_success=steps_to_success,
        seconds_to_success=seconds_to_success,
        steps=n_steps,
        seconds=seconds,
        seconds_per_step=sum(h.seconds for h in history) / max(n_steps, 1),
        perplexity=ppl,
        history=history,
    )


def run_universal(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_prompts: list[str],
    heldout_prompts: list[str],
    target: str | int | list[int],
    config: GCGConfig | None = None,
    log: LogFn | None = None,
) -> GCGResult:
    """One trigger for many posts, optimized on `train_prompts` and judged on `heldout_prompts` only."""
    overlap = set(train_prompts) & set(heldout_prompts)
    if overlap:
        raise ValueError(f"{len(overlap)} held-out prompts also appear in train_prompts: transfer must be held out")
    if not heldout_prompts:
        raise ValueError("heldout_prompts is empty: a universal trigger is judged on held-out posts")
    cfg = config or GCGConfig()
    res = run(model, tokenizer, train_prompts, target, cfg, log)
    res.train = evaluate_trigger(model, tokenizer, train_prompts, target, res.trigger_ids, cfg.position)
    res.heldout = evaluate_trigger(model, tokenizer, heldout_prompts, target, res.trigger_ids, cfg.position)
    return res


# ----------------------------------------------------------------------------------------- "magic word" eval
@dataclass
class TargetSteeringReport:
    """How often GCG makes a random top-n next token the argmax (Bhargava et al. 2023 setting)."""

    n_cases: int
    k: int
    success_rate: float
    mean_steps_to_success: float | None
    seconds_per_case: float
    mean_uplift: float
    cases: list[dict] = field(default_factory=list)


def evaluate_target_steering(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    n_cases: int = 100,
    k: int = 10,
    top_n: int = 75,
    config: GCGConfig | None = None,
    seed: int = 0,
    log: LogFn | None = None,
) -> TargetSteeringReport:
    """Success rate of reaching a target drawn from the model's own top-`top_n` next tokens with `k` tokens.

    Anchor: "What's the Magic Word?" (Bhargava et al. 2023): <= 10 control tokens reach the correct next
    token 97% of the time and a top-75 token 85%. The current argmax is excluded (it needs no steering)
    and so are tokens a trigger could not contain anyway (special, non-ASCII), for comparable targets.
    """
    if k > 10:
        raise ValueError(f"k={k}: the magic-word setting uses at most 10 control tokens")
    if not prompts:
        raise ValueError("prompts is empty")
    cfg = (config or GCGConfig()).model_copy(update={"n_tokens": k})
    rng = random.Random(seed)
    banned = set(not_allowed_token_ids(tokenizer).tolist())
    cases = []
    for i in tqdm(range(n_cases), desc="magic-word", disable=not cfg.show_progress):
        prompt = prompts[i % len(prompts)]
        with torch.no_grad(), frozen(model):
            ids = encode(tokenizer, prompt).to(model.device)[None]
            top = model(input_ids=ids).logits[0, -1].topk(top_n).indices.tolist()
        pool = [t for t in top[1:] if t not in banned]
        target = rng.choice(pool)
        t0 = time.perf_counter()
        res = run(model, tokenizer, prompt, target, cfg.model_copy(update={"seed": seed + i}))
        ev = evaluate_trigger(model, tokenizer, [prompt], target, res.trigger_ids, cfg.position)
        cases.append(
            {
                "prompt_index": i % len(prompts),
                "target_id": target,
                "target_rank": top.index(target),
                "success": res.success,
                "steps": res.steps_to_success,
                "seconds": time.perf_counter() - t0,
                "uplift": ev.mean_uplift,
                "trigger": res.trigger,
            }
        )
        if log is not None:
            log({"magic/success": float(res.success), "magic/uplift": ev.mean_uplift}, i)
    wins = [c for c in cases if c["success"]]
    return TargetSteeringReport(
        n_cases=n_cases,
        k=k,
        success_rate=len(wins) / n_cases,
        mean_steps_to_success=(sum(c["steps"] for c in wins) / len(wins)) if wins else None,
        seconds_per_case=sum(c["seconds"] for c in cases) / n_cases,
        mean_uplift=sum(c["uplift"] for c in cases) / n_cases,
        cases=cases,
    )
