"""The side-by-side row of one steering method: every method sampled, scored and compared with the SFT policy
the same way, so the rows of the steer stage's table (and eval-policy's) compare.

    writer = Writer("goal token", model, tok, ids_embeds(model, tok, prompts), True, "goal SFT", 12.0)
    row, responses = evaluate_writer(writer, sft_model, tok, held, reward_fn, SideBySideEvalSection(...), gold_fn)

A `Writer` is what a method changes: the model that samples and each post's prompt embeddings (a trigger
spliced in, a goal token appended, or the plain prompt). `WeightsGuard` checks that the input-only methods
left the frozen policy bit-identical.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from policy.evaluate import GoldFn, HeldOut, Responses, kl_estimate, make_row, score_responses
from policy.goals import reward_trigger
from policy.goals.common import RewardFn, encode, frozen, weights_fingerprint
from policy.goals.reward_trigger import RewardTriggerConfig
from policy.sampling import forward_logprobs


class SideBySideEvalSection(BaseModel):
    """How the steer stage's side-by-side rows are sampled; None = the eval-policy stage's setting, so the rows
    compare (filled in when the experiment config loads, `pipelines.config`).

    The prompts are eval-policy's held-out prompts (`eval_policy.split`, `max_prompts`, `seed`).
    """

    model_config = ConfigDict(extra="forbid")

    samples_per_post: int | None = Field(None, ge=1, description="Summaries per post; None = eval_policy.samples_per_prompt.")
    response_length: int | None = Field(None, ge=1, description="Tokens sampled per summary; None = eval-policy's.")
    temperature: float | None = Field(None, gt=0, description="Sampling (and KL) temperature; None = eval-policy's.")
    n_shown: int = Field(3, ge=0, description="Posts whose summaries (every method) go to the samples table.")


class WeightsGuard:
    """The SFT policy's fingerprint, taken once and checked after every input-only method."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.before = weights_fingerprint(model)
        self.checked: list[str] = []

    def check(self, method: str) -> bool:
        after = weights_fingerprint(self.model)
        if after != self.before:
            raise RuntimeError(f"steering method {method!r} changed the SFT policy's weights (fingerprint differs)")
        self.checked.append(method)
        return False  # weights_changed


@dataclass
class Writer:
    """How one method writes a summary: the model that samples and each post's prompt embeddings (L, d)."""

    method: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    prompt_embeds: Callable[[int], torch.Tensor]  # post index -> (L, d)
    weights_changed: bool
    compute: str
    seconds: float


def ids_embeds(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> Callable[[int], torch.Tensor]:
    emb = model.get_input_embeddings()
    return lambda i: emb(encode(tokenizer, prompts[i]).to(model.device))


def trigger_embeds(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                   trig_emb: torch.Tensor, position: str) -> Callable[[int], torch.Tensor]:
    """Embeddings of before + trigger + after, exactly as the reward-trigger search saw them."""
    posts = reward_trigger.PostParts(tokenizer, prompts, position, model.device)
    trig = trig_emb.to(model.device)
    return lambda i: reward_trigger.pre_embeds(model, posts.before[i], trig, posts.after[i])


@torch.no_grad()
def evaluate_writer(
    writer: Writer,
    reference: PreTrainedModel,
    ref_tokenizer: PreTrainedTokenizerBase,
    held: HeldOut,
    reward_fn: RewardFn,
    cfg: SideBySideEvalSection,
    gold_fn: GoldFn | None = None,
    seed: int = 0,
) -> tuple[dict, Responses]:
    """One side-by-side row (`policy.evaluate.make_row`) from `samples_per_post` summaries per held-out post.

    KL per sample = log pi_method(y | its prompt) - log pi_SFT(y | plain prompt), both at the eval temperature
    and summed over response tokens (EOS included, as eval-policy counts them); the mean estimates
    KL(method || SFT). Samples with ids the SFT tokenizer lacks (a goal token sampled) are left out of the KL only.
    """
    if cfg.samples_per_post is None or cfg.response_length is None or cfg.temperature is None:
        raise ValueError("steer.eval needs samples_per_post, response_length and temperature (the experiment config "
                         "fills them from eval_policy when left None)")
    started = time.perf_counter()
    tok, n = writer.tokenizer, cfg.samples_per_post
    scfg = RewardTriggerConfig(response_length=cfg.response_length, temperature=cfg.temperature)
    gen = torch.Generator().manual_seed(seed)
    vocab = reference.get_input_embeddings().num_embeddings
    texts: list[str] = []
    lengths, has_eos, logprob, ref_logprob = [], [], [], []
    with frozen(writer.model), frozen(reference):
        for i, prompt in enumerate(tqdm(held.prompts, desc=f"eval {writer.method}", leave=False)):
            pre = writer.prompt_embeds(i)  # (L, d)
            # 1. n summaries of this post from the writer's prompt: (n, R), truncated after the first EOS
            ids, mask = reward_trigger.sample_from_embeds(writer.model, pre, n, scfg, tok, gen)
            texts += tok.batch_decode(ids, skip_special_tokens=True)
            lengths.append(mask.sum(1).float())
            has_eos.append((ids == tok.eos_token_id).any(1))
            # 2. log-probs under the writer (its prompt) and under the SFT policy (the plain prompt): (n,)
            logprob.append(reward_trigger.response_logprob(writer.model, pre, ids, mask, cfg.temperature))
            ref = torch.full((n,), float("nan"))
            ok = (ids < vocab).all(1)
            if ok.any():
                q = encode(ref_tokenizer, prompt).to(ids.device)[None].expand(int(ok.sum()), -1)
                ref[ok] = forward_logprobs(reference, q, torch.ones_like(q), ids[ok], mask[ok], cfg.temperature).sum(-1).cpu()
            ref_logprob.append(ref)
    cat = lambda xs: torch.cat([x.detach().cpu() for x in xs]).double().numpy()  # noqa: E731
    res = Responses(texts, cat(lengths), cat(has_eos).astype(bool), cat(logprob), cat(ref_logprob), 0.0, n)
    # 3. reward (the judge reads the plain prompt), gold and ROUGE-L, each against the reference TL;DR
    score_responses(res, held, [i for i in range(len(held)) for _ in range(n)], reward_fn, gold_fn)
    res.seconds = time.perf_counter() - started
    ok = ~np.isnan(res.ref_logprob)
    kl = kl_estimate(res.logprob[ok], res.ref_logprob[ok]) if ok.any() else float("nan")
    row = make_row(writer.method, res, held, kl, writer.weights_changed, writer.compute, writer.seconds + res.seconds)
    return row, res
