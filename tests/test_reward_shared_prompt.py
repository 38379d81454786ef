"""Shared-prompt pair batching: the same rewards, loss and gradients as TRL's two-row batches, fewer tokens."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import GPT2Config, GPT2ForSequenceClassification
from trl import RewardTrainer

from policy.models import train_tokenizer
from reward_model.encoding import pad_batch, sequence_scores
from reward_model.model import build_reward_model
from reward_model.shared_prompt import (
    SharedPromptCollator,
    SharedPromptRewardTrainer,
    packed_length,
    pair_rewards,
    shared_prefix_length,
)
from reward_model.train import (
    RewardStageConfig,
    make_reward_config,
    make_reward_trainer,
    tokenize_pairs,
    train_reward_model,
)
from tests.launch import REPO, torchrun_two_cpus
from tests.test_reward_model import _bert_world, _pair_rows


@pytest.fixture(scope="module")
def tiny():
    rows = _pair_rows(24, 7)
    tok = train_tokenizer([r["prompt"] + r["chosen"] + r["rejected"] for r in rows], vocab_size=400)
    return rows, tok


def _rm(tok, attn: str = "sdpa") -> GPT2ForSequenceClassification:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2, num_labels=1,
                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, attn_implementation=attn,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2ForSequenceClassification(cfg)


def test_shared_prefix_length_hand_cases():
    assert shared_prefix_length([1, 2, 3, 4], [1, 2, 5]) == 2
    assert shared_prefix_length([9, 2], [1, 2]) == 0
    # identical or nested sequences keep one token of each side to read its score at
    assert shared_prefix_length([1, 2, 3], [1, 2, 3]) == 2
    assert shared_prefix_length([1, 2], [1, 2, 3, 4]) == 1
    assert packed_length([1, 2, 3, 4], [1, 2, 5]) == 5  # 2 shared + 2 + 1


def test_collator_layout_positions_and_mask():
    batch = SharedPromptCollator(pad_token_id=0)([{"chosen_ids": [5, 6, 7, 8], "rejected_ids": [5, 6, 9]},
                                                  {"chosen_ids": [4, 3], "rejected_ids": [2]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [4, 3, 2, 0, 0]]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 2]  # the rejected suffix restarts after the prefix
    assert batch["chosen_index"].tolist() == [3, 1] and batch["rejected_index"].tolist() == [4, 2]
    m = batch["attention_mask"][0, 0]
    assert m[4].tolist() == [True, True, False, False, True]  # rejected token: prefix and itself, no chosen
    assert m[3].tolist() == [True, True, True, True, False]  # chosen token: causal
    assert int(batch["n_tokens"]) == 5 + 3


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_rewards_equal_the_two_row_path(tiny, attn):
    rows, tok = tiny
    model = _rm(tok, attn).eval()
    ds, _ = tokenize_pairs(Dataset.from_list(rows), tok, 200, use_margin=False, batching="shared_prompt")
    examples = [ds[i] for i in range(len(ds))]
    with torch.no_grad():
        chosen, rejected = pair_rewards(model, SharedPromptCollator(tok.pad_token_id)(examples))
        ref_c = sequence_scores(model, **pad_batch([e["chosen_ids"] for e in examples], tok.pad_token_id))
        ref_r = sequence_scores(model, **pad_batch([e["rejected_ids"] for e in examples], tok.pad_token_id))
    torch.testing.assert_close(chosen, ref_c, atol=1e-5, rtol=0)
    torch.testing.assert_close(rejected, ref_r, atol=1e-5, rtol=0)
    assert ref_c.std() > 1e-4  # not trivially equal: the rewards differ across pairs
    # and the rows really are shorter: the prompt is counted once
    assert sum(ds["length"]) < 0.8 * sum(len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples)


@pytest.mark.parametrize("use_margin", [False, True])
def test_loss_and_gradients_equal_trls(tiny, tmp_path, use_margin):
    rows, tok = tiny
    cfg = RewardStageConfig(max_steps=1, max_length=200, eval_steps=0, center_rewards_coefficient=0.01)
    out = {}
    for batching, cls in [("pairs", RewardTrainer), ("shared_prompt", SharedPromptRewardTrainer)]:
        model = _rm(tok)
        ds, _ = tokenize_pairs(Dataset.from_list(rows), tok, 200, use_margin=use_margin, batching=batching)
        trainer = make_reward_trainer(batching, model, make_reward_config(cfg, tmp_path / batching, [], has_eval=False),
                                      tok, train_dataset=ds)
        assert type(trainer) is cls
        model.train()
        loss = trainer.compute_loss(model, trainer.data_collator([ds[i] for i in range(len(ds))]))
        loss.backward()
        out[batching] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()},
                         dict(trainer._metrics["train"]))
    (l_ref, g_ref, m_ref), (l_sh, g_sh, m_sh) = out["pairs"], out["shared_prompt"]
    torch.testing.assert_close(l_sh, l_ref, atol=1e-5, rtol=0)
    for name in g_ref:
        torch.testing.assert_close(g_sh[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=name)
    for key in ("accuracy", "margin", "mean_reward"):
        assert m_sh[key] == pytest.approx(m_ref[key], abs=1e-5)


def test_auto_picks_shared_prompt_for_decoders_and_pairs_for_encoders(tiny, tmp_path):
    rows, tok = tiny
    pairs = DatasetDict(train=Dataset.from_list(rows))
    cfg = RewardStageConfig(max_steps=2, max_length=200, eval_steps=0, save_steps=100)
    res = train_reward_model(_rm(tok), tok, pairs, tmp_path / "gpt2", cfg, [])
    assert res.batching == "shared_prompt" and res.global_step == 2
    two_rows = train_reward_model(_rm(tok), tok, pairs, tmp_path / "gpt2-pairs", cfg.model_copy(update={"batching": "pairs"}), [])
    assert two_rows.tokens_per_pair > res.tokens_per_pair  # the prompt counted twice

    btok, bcfg = _bert_world()
    bert = build_reward_model(bcfg, btok)
    bres = train_reward_model(bert, btok, DatasetDict(train=Dataset.from_list(_pair_rows(16, 4))), tmp_path / "bert",
                              cfg.model_copy(update={"max_length": 64}), [])
    assert bres.batching == "pairs"
    with pytest.raises(ValueError, match=r"reward.batching='shared_prompt'.*BertForSequenceClassification.*score"):
        train_reward_model(build_reward_model(bcfg, btok), btok, DatasetDict(train=Dataset.from_list(_pair_rows(16, 4))),
                           tmp_path / "bert2", cfg.model_copy(update={"batching": "shared_prompt", "max_length": 64}), [])


def test_flash_attention_is_refused_with_a_clear_message(tiny):
    _, tok = tiny
    model = _rm(tok)
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="4D mask.*sdpa"):
        SharedPromptRewardTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_dict(
            {"chosen_ids": [[1, 2]], "rejected_ids": [[1, 3]]}))


def test_data_parallel_ranks_stay_in_sync_with_shared_prompt_rows(tmp_path):
    """Two CPU processes (torchrun, gloo): the score head's hook runs inside DDP's forward, so gradients are
    all-reduced and both ranks end with identical weights; shared-prompt and two-row training agree."""
    results = {}
    for batching in ("shared_prompt", "pairs"):
        torchrun_two_cpus(str(REPO / "tests/scripts/ddp_reward.py"), str(tmp_path), batching)
        results[batching] = [torch.load(tmp_path / f"{batching}-rank{r}.pt") for r in (0, 1)]

    def max_diff(a: dict, b: dict) -> float:
        return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)

    for batching, (r0, r1) in results.items():
        assert r0["world_size"] == 2, batching
        assert max_diff(r0["params"], r1["params"]) == 0.0, batching  # all-reduced: identical on both ranks
        assert max_diff(r0["params"], r0["init"]) > 1e-2, batching  # and they did train
    shared, pairs = results["shared_prompt"][0], results["pairs"][0]
    assert shared["train_loss"] == pytest.approx(pairs["train_loss"], abs=1e-4)
    # Adam normalizes each coordinate, so float-level gradient differences can move a few weights by ~lr;
    # the two ways still land far closer to each other than to where they started.
    assert max_diff(shared["params"], pairs["params"]) < 0.1 * max_diff(shared["params"], shared["init"])
