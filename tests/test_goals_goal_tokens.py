"""Goal tokens: within-subreddit buckets, SFT that learns the bucket, per-bucket evaluation."""

from __future__ import annotations

import torch

from policy.goals import goal_tokens as gt
from policy.goals.toy import toy_model, toy_prompts

torch.set_num_threads(1)


def test_bucketize_is_within_subreddit():
    scores = [1, 2, 3, 4, 100, 200, 300, 400]
    subs = ["a"] * 4 + ["b"] * 4
    b = gt.bucketize(scores, subs, 2)
    assert b == [0, 0, 1, 1, 0, 0, 1, 1]  # subreddit b's raw scores do not push a's rows down
    assert gt.bucketize([5, 5, 5], ["a"] * 3, 5) == [2, 2, 2]  # ties share the mid-rank bucket


def test_goal_sft_learns_the_bucket_and_evaluates():
    model, tok = toy_model(seed=2)
    ids = gt.add_goal_tokens(model, tok, 2)
    assert len(ids) == 2 and model.get_input_embeddings().weight.shape[0] == len(tok)
    assert tok(gt.goal_prompt("TL;DR:", 1), add_special_tokens=False)["input_ids"][-1] == ids[1]
    prompts = toy_prompts(16, seed=4)
    buckets = [i % 2 for i in range(16)]
    completions = [" rent" if b else " car" for b in buckets]  # the bucket decides the summary
    before = model.transformer.wte.weight.detach().clone()
    cfg = gt.GoalTokenConfig(n_buckets=2, epochs=25, lr=3e-3, batch_size=8, response_length=1, temperature=0)
    losses = gt.train_goal_sft(model, tok, prompts, completions, buckets, cfg)
    assert losses[-1] < losses[0] and not torch.equal(before, model.transformer.wte.weight)
    test = toy_prompts(20, seed=9)[-4:]
    for b, word in ((0, " car"), (1, " rent")):
        q = torch.tensor([tok(gt.goal_prompt(test[0], b), add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            assert tok.decode([int(model(input_ids=q).logits[0, -1].argmax())]) == word

    def says_rent(prompts, responses):
        return torch.tensor([float("rent" in r) for r in responses])

    reports, rho = gt.evaluate_buckets(model, tok, test, says_rent, cfg, gold_fn=lambda p, s: len(s))
    assert [r.bucket for r in reports] == [0, 1]
    assert reports[1].reward > reports[0].reward and abs(rho - 1.0) < 1e-6
    assert reports[0].gold is not None
