"""GCG target steering on a tiny random GPT-2: exact candidate losses, success, frozen weights, held-out."""

from __future__ import annotations

import pytest
import torch

from policy.goals import gcg
from policy.goals.common import not_allowed_token_ids, prepare_case, weights_fingerprint
from policy.goals.toy import toy_model, toy_prompts

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return toy_model(seed=0)


@pytest.mark.parametrize("position", ["prefix", "before_tldr", "suffix"])
def test_candidate_batch_matches_direct_forward(tiny, position):
    model, tok = tiny
    prompt = toy_prompts(1)[0]
    case = prepare_case(model, tok, prompt, " money back", position)
    gen = torch.Generator().manual_seed(0)
    cands = torch.randint(10, len(tok) - 1, (6, 4), generator=gen)
    batched, _ = gcg.candidate_losses(model, [case], cands, batch_size=4)  # two chunks, cache expanded
    nt = case.target_ids.numel()
    for i in range(cands.shape[0]):
        with torch.no_grad():
            logits = model(input_ids=case.full_ids(cands[i])[None]).logits[0, -nt - 1 : -1]
        direct = torch.nn.functional.cross_entropy(logits, case.target_ids)
        assert abs(float(batched[i]) - float(direct.detach())) < 1e-5


def test_gcg_reaches_easy_target_and_keeps_weights(tiny):
    model, tok = tiny
    prompt = toy_prompts(1)[0]
    target = " money"
    fp = weights_fingerprint(model)
    flags = [p.requires_grad for p in model.parameters()]
    res = gcg.run(model, tok, prompt, target, gcg.GCGConfig(n_tokens=5, num_steps=40, search_width=64, seed=0))
    assert weights_fingerprint(model) == fp  # bit-identical
    assert [p.requires_grad for p in model.parameters()] == flags  # caller's flags restored
    assert all(p.grad is None for p in model.parameters())
    assert res.success and res.steps_to_success is not None
    assert res.best_loss < res.initial_loss
    ev = gcg.evaluate_trigger(model, tok, [prompt], target, res.trigger_ids, "suffix")
    assert ev.success_rate == 1.0 and ev.mean_uplift > 0
    assert res.perplexity > 1.0
    # the trigger honours the not-allowed list and the retokenization round trip
    banned = set(not_allowed_token_ids(tok).tolist())
    assert not banned & set(res.trigger_ids)
    assert tok(res.trigger, add_special_tokens=False)["input_ids"] == res.trigger_ids


def test_retokenization_filter_drops_merging_candidates(tiny):
    _, tok = tiny
    good = tok(" money back", add_special_tokens=False)["input_ids"]
    bad = [tok.convert_tokens_to_ids(ch) for ch in "Ġmoney"]  # one byte per token: " money" merges them
    good = good + good[:1] * (len(bad) - len(good))
    assert tok(tok.decode(bad), add_special_tokens=False)["input_ids"] != bad
    kept = gcg.retokenization_filter(tok, torch.tensor([good, bad]))
    assert kept.tolist() == [good]


def test_prefix_cache_gives_same_gradient_and_losses(tiny):
    model, tok = tiny
    prompt = toy_prompts(1)[0]
    trig = torch.tensor([tok.convert_tokens_to_ids("x")] * 3)
    cands = torch.randint(10, len(tok) - 1, (5, 3), generator=torch.Generator().manual_seed(1))
    out = []
    for cached in (True, False):
        case = prepare_case(model, tok, prompt, " rent", "before_tldr", use_prefix_cache=cached)
        assert (case.prefix_kv is not None) == cached
        grad, loss, _ = gcg._onehot_grad(model, [case], trig)
        losses, _ = gcg.candidate_losses(model, [case], cands)
        out.append((grad, loss, losses))
    assert torch.allclose(out[0][0], out[1][0], atol=1e-5)
    assert out[0][1] == pytest.approx(out[1][1], abs=1e-5)
    assert torch.allclose(out[0][2], out[1][2], atol=1e-5)


def test_universal_trigger_is_judged_on_heldout_only(tiny):
    model, tok = tiny
    prompts = toy_prompts(6, seed=3)
    train, heldout = prompts[:3], prompts[3:]
    with pytest.raises(ValueError, match="held-out"):
        gcg.run_universal(model, tok, train, heldout + train[:1], " money")
    cfg = gcg.GCGConfig(n_tokens=4, num_steps=15, search_width=32)
    fp = weights_fingerprint(model)
    res = gcg.run_universal(model, tok, train, heldout, " money", cfg)
    assert weights_fingerprint(model) == fp
    assert res.heldout is not None and res.heldout.n_posts == len(heldout)
    assert res.train is not None and res.train.n_posts == len(train)
    assert res.history[-1].loss < res.initial_loss


def test_magic_word_eval_reports_per_case(tiny):
    model, tok = tiny
    cfg = gcg.GCGConfig(num_steps=10, search_width=32)
    prompts = toy_prompts(2)
    rep = gcg.evaluate_target_steering(model, tok, prompts, n_cases=2, k=3, top_n=20, config=cfg)
    assert rep.n_cases == 2 and len(rep.cases) == 2
    assert all(0 < c["target_rank"] < 20 for c in rep.cases)
    # Each case's verdict holds when its trigger is re-judged by direct, uncached forwards (filter_ids keeps
    # triggers whose text re-encodes to the same ids), and the report's rate is the share of those verdicts.
    for c in rep.cases:
        trigger_ids = tok(c["trigger"], add_special_tokens=False)["input_ids"]
        assert len(trigger_ids) == 3
        prompt = prompts[c["prompt_index"]]
        direct = gcg.evaluate_trigger(model, tok, [prompt], c["target_id"], trigger_ids, cfg.position)
        assert direct.success_rate == float(c["success"])
        assert direct.mean_uplift == pytest.approx(c["uplift"], abs=1e-5)
    wins = [c for c in rep.cases if c["success"]]
    assert rep.success_rate == len(wins) / 2 == 0.5  # seeded: one target reached in 10 steps, one not
    assert rep.mean_steps_to_success == pytest.approx(sum(c["steps"] for c in wins) / len(wins))
    with pytest.raises(ValueError, match="k=11"):
        gcg.evaluate_target_steering(model, tok, toy_prompts(1), n_cases=1, k=11)


def test_init_with_target_starts_from_the_target_repeated(tiny):
    model, tok = tiny
    prompt = toy_prompts(1)[0]
    target_id = tok(" money", add_special_tokens=False)["input_ids"][0]
    cfg = gcg.GCGConfig(n_tokens=4, num_steps=1, search_width=8, seed=0, early_stop=False)
    warm = gcg.run(model, tok, prompt, target_id, cfg.model_copy(update={"init_with_target": True}))
    cold = gcg.run(model, tok, prompt, target_id, cfg)
    direct = gcg.evaluate_trigger(model, tok, [prompt], target_id, [target_id] * 4, "suffix")
    assert warm.initial_loss == pytest.approx(-direct.mean_logprob, abs=1e-4)
    assert cold.initial_loss != pytest.approx(warm.initial_loss, abs=1e-4)


def test_init_ids_warm_start_from_the_given_trigger(tiny):
    """`init_ids` replaces the repeated init token, and its length sets k."""
    model, tok = tiny
    prompt = toy_prompts(1)[0]
    start = tok(" get your money", add_special_tokens=False)["input_ids"]
    cfg = gcg.GCGConfig(n_tokens=8, num_steps=1, search_width=8, seed=0, early_stop=False)
    res = gcg.run(model, tok, prompt, " back", cfg, init_ids=start)
    direct = gcg.evaluate_trigger(model, tok, [prompt], " back", start, "suffix")
    assert res.initial_loss == pytest.approx(-direct.mean_logprob / len(tok(" back")["input_ids"]), abs=1e-4)
    assert len(res.trigger_ids) == len(start)
    with pytest.raises(ValueError, match="init_ids is empty"):
        gcg.run(model, tok, prompt, " back", cfg, init_ids=[])


def test_restarts_start_over_from_word_tokens_only_while_failing(tiny):
    """`restarts`: after num_steps without success the search starts again from random word tokens (every
    position replaced, not one swap); a search that succeeds stops without restarting."""
    model, tok = tiny
    prompt = toy_prompts(1)[0]
    target_id = tok(" money", add_special_tokens=False)["input_ids"][0]
    cfg = gcg.GCGConfig(n_tokens=6, num_steps=2, search_width=4, topk=4, seed=0, early_stop=False, restarts=2)
    res = gcg.run(model, tok, prompt, target_id, cfg)
    assert res.steps == 6
    ids = [tok(h.trigger, add_special_tokens=False)["input_ids"] for h in res.history]
    assert sum(a != b for a, b in zip(ids[1], ids[2])) >= 4  # step 3 is a restart: most positions new
    assert sum(a != b for a, b in zip(ids[0], ids[1])) <= 1  # step 2 is one GCG swap
    words = [t for t in tok.batch_decode([[i] for i in ids[2]]) if t.startswith(" ") and t[1:].isalpha()]
    assert len(words) >= 5  # the restart's random words, one GCG swap after
    easy = gcg.run(model, tok, prompt, " money", gcg.GCGConfig(n_tokens=5, num_steps=40, search_width=64, seed=0,
                                                                restarts=3))
    assert easy.success and easy.steps == easy.steps_to_success <= 40
