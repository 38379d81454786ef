"""Reward model: the padding traps, margin loss, normalization, one scorer everywhere, resume, LoRA."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast
from trl import RewardTrainer

from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from reward_model.encoding import encode_prompt_response, pad_batch, sequence_scores
from reward_model.evaluate import evaluate_reward_model
from reward_model.model import build_reward_model, check_reward_model, ensure_distinct_pad
from reward_model.scoring import REWARD_CONFIG_NAME, RewardFileConfig, RewardScorer
from reward_model.train import RewardStageConfig, make_reward_config, tokenize_pairs, train_reward_model

GOOD = ["clear", "kind", "short", "honest", "useful", "calm"]
BAD = ["rude", "long", "vague", "wrong", "boring", "loud"]
FILLER = ["my", "cat", "dog", "went", "home", "today", "and", "then", "slept"]


def _pair_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        post = " ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 25)))
        prompt = f"SUBREDDIT: r/test\n\nTITLE: post {i}\n\nPOST: {post}\n\nTL;DR:"
        good = " " + " ".join(rng.choice(GOOD) for _ in range(rng.randint(1, 5)))
        bad = " " + " ".join(rng.choice(BAD) for _ in range(rng.randint(1, 5)))
        rows.append(
            {
                "pair_id": f"{seed}-{i}", "post_id": f"p{seed}-{i}", "subreddit": rng.choice(["a", "b"]),
                "strategy": "same_post", "prompt": prompt, "chosen": good, "rejected": bad,
                "chosen_score": 30, "rejected_score": 10, "score_ratio": 3.0, "margin": 1.0,
                "chosen_created_utc": 2.0, "rejected_created_utc": 1.0, "post_text": post,
            }
        )
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny pairs, tokenizer, a saved tiny GPT-2 'policy', and one RM trained on the pairs."""
    root = tmp_path_factory.mktemp("rm")
    rows = _pair_rows(200, 0)
    pairs = DatasetDict(train=Dataset.from_list(rows[:160]), validation=Dataset.from_list(rows[160:]))
    reference = Dataset.from_list([{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows[160:]])
    tok = train_tokenizer([r["prompt"] + r["chosen"] + r["rejected"] for r in rows], vocab_size=400)
    lm = build_tiny_causal_lm(tok, ModelSpec(n_layer=2, n_embd=32, n_head=2, n_positions=256, seed=0))
    lm.save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    rm = build_reward_model(root / "policy", tok)
    before = {k: v.clone() for k, v in rm.state_dict().items()}
    cfg = RewardStageConfig(max_steps=30, learning_rate=1e-3, max_length=96, eval_steps=15, save_steps=15,
                            warmup_ratio=0.0)
    result = train_reward_model(rm, tok, pairs, root / "rm", cfg, report_to=[], reference=reference)
    return dict(root=root, pairs=pairs, reference=reference, tok=tok, rm=rm, before=before, result=result, cfg=cfg)


def _tiny_gpt2_rm(tok, pad_id: int) -> GPT2ForSequenceClassification:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2, num_labels=1,
                     pad_token_id=pad_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    return GPT2ForSequenceClassification(cfg).eval()


# ------------------------------------------------------------------------------------------- padding traps
def test_pad_equal_eos_reads_the_wrong_token_but_our_scores_do_not(world):
    tok = world["tok"]
    rows = world["pairs"]["validation"][:4]
    ids, _ = encode_prompt_response(tok, rows["prompt"], rows["chosen"], max_length=None)
    assert all(s[-1] == tok.eos_token_id for s in ids)
    model = _tiny_gpt2_rm(tok, pad_id=tok.eos_token_id)  # the trap: pad == eos
    batch = pad_batch(ids, pad_token_id=tok.eos_token_id)
    with torch.no_grad():
        hf = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
        ours = sequence_scores(model, **batch)
        # Ground truth: each sequence alone, read at its last token (the EOS).
        alone = torch.stack(
            [model.score(model.transformer(torch.tensor([s])).last_hidden_state)[0, -1, 0] for s in ids]
        )
    torch.testing.assert_close(ours, alone, atol=1e-5, rtol=0)
    assert not torch.allclose(hf, alone, atol=1e-3), "HF's pad-id lookup should read the token before EOS"
    with pytest.raises(ValueError, match="pad_token_id"):
        check_reward_model(model, tok)


def test_ensure_distinct_pad_fixes_pad_equal_eos():
    tok = train_tokenizer(["hello world"] * 5, vocab_size=300)
    tok.pad_token = tok.eos_token
    assert ensure_distinct_pad(tok)
    assert tok.pad_token_id != tok.eos_token_id


def test_left_and_right_padding_give_identical_scores(world):
    scorer = RewardScorer.from_pretrained(world["root"] / "rm", batch_size=8)
    v = world["pairs"]["validation"]
    prompts, responses = list(v["prompt"]), list(v["chosen"])
    right = scorer.score(prompts, responses, padding_side="right")
    left = scorer.score(prompts, responses, padding_side="left")
    torch.testing.assert_close(left, right, atol=1e-5, rtol=0)
    # Without position_ids, left padding would shift GPT-2's absolute positions: the test is not vacuous.
    ids, _ = encode_prompt_response(scorer.tokenizer, prompts[:8], responses[:8], None)
    b = pad_batch(ids, scorer.tokenizer.pad_token_id, side="left")
    with torch.no_grad():
        naive = sequence_scores(scorer.model, b["input_ids"], b["attention_mask"],
                                position_ids=torch.arange(b["input_ids"].shape[1]).expand_as(b["input_ids"]))
    assert not torch.allclose(naive + scorer.bias, right[:8], atol=1e-3)


def test_scorer_reads_the_same_token_as_the_trainer(world):
    """With pad != eos and right padding, our last-token read equals HF's pooled logit (what TRL trains)."""
    tok, model = world["tok"], world["rm"].eval()
    v = world["pairs"]["validation"][:6]
    ids, _ = encode_prompt_response(tok, v["prompt"], v["rejected"], None)
    b = pad_batch(ids, tok.pad_token_id)
    with torch.no_grad():
        hf = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, 0]
        torch.testing.assert_close(sequence_scores(model, **b), hf, atol=1e-5, rtol=0)


def _bert_world():
    """A BERT-style WordPiece tokenizer ([CLS] ... [SEP], no EOS) and a tiny BERT config."""
    texts = [r["prompt"] + r["chosen"] + r["rejected"] for r in _pair_rows(50, 3)]
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wp.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", wp.token_to_id("[CLS]")), ("[SEP]", wp.token_to_id("[SEP]"))]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=wp, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]", padding_side="right")
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return tok, cfg


def test_tokenizer_without_eos_trains_and_scores(tmp_path):
    tok, cfg = _bert_world()
    assert tok.eos_token is None
    ids, n_cut = encode_prompt_response(tok, ["a long prompt " * 40], [" kind"], max_length=16)
    assert n_cut == 1 and len(ids[0]) == 16
    assert ids[0][0] == tok.cls_token_id and ids[0][-1] == tok.sep_token_id  # [CLS] kept, response kept
    rows = _pair_rows(40, 4)
    pairs = DatasetDict(train=Dataset.from_list(rows))
    model = build_reward_model(cfg, tok)
    res = train_reward_model(model, tok, pairs, tmp_path / "rm",
                             RewardStageConfig(max_steps=3, max_length=64, eval_steps=0, save_steps=100), [])
    assert res.global_step == 3
    scorer = RewardScorer.from_pretrained(tmp_path / "rm")
    out = scorer.score([r["prompt"] for r in rows[:5]], [r["chosen"] for r in rows[:5]])
    assert out.shape == (5,) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------- loss
def test_margin_enters_the_loss_as_documented(world):
    tok, model = world["tok"], world["rm"]
    ds, _ = tokenize_pairs(world["pairs"]["validation"].select(range(8)), tok, 96, use_margin=True)
    args = make_reward_config(world["cfg"], world["root"] / "margin", [], has_eval=False)
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    model.eval()
    with_margin = trainer.data_collator([ds[i] for i in range(8)])
    without = {k: v for k, v in with_margin.items() if k != "margin"}
    with torch.no_grad():
        loss_m = trainer.compute_loss(model, dict(with_margin))
        loss_0 = trainer.compute_loss(model, dict(without))
        r = model(input_ids=without["input_ids"], attention_mask=without["attention_mask"]).logits[:, 0]
    r_c, r_r = r[:8], r[8:]
    torch.testing.assert_close(loss_0, -F.logsigmoid(r_c - r_r).mean())
    torch.testing.assert_close(loss_m, -F.logsigmoid(r_c - r_r - 1.0).mean())
    assert loss_m > loss_0  # a margin of 1 demands a larger reward gap


# ------------------------------------------------------------------------------------------- training
def test_training_changes_parameters_and_learns(world):
    after = world["rm"].state_dict()
    changed = [k for k, v in world["before"].items() if not torch.equal(v, after[k])]
    assert len(changed) >= len(after) // 2
    assert world["result"].metrics["rm/eval/accuracy"] >= 0.9
    assert world["result"].global_step == 30


def test_normalization_gives_mean_zero_on_reference(world):
    path = world["root"] / "rm"
    saved = json.loads((path / REWARD_CONFIG_NAME).read_text())
    assert saved["n_reference"] == len(world["reference"]) and saved["tokenizer_path"] == "."
    scorer = RewardScorer.from_pretrained(path)
    ref = world["reference"]
    rewards = scorer.score(list(ref["prompt"]), list(ref["completion"]))
    assert abs(rewards.mean().item()) < 1e-4
    assert abs(scorer.bias) > 0  # raw scores were not already centred
    torch.testing.assert_close(scorer.score_raw(ref["prompt"][:3], ref["completion"][:3]) + scorer.bias,
                               rewards[:3])


def test_same_numbers_in_eval_and_when_called_like_ppo(world):
    scorer = RewardScorer.from_pretrained(world["root"] / "rm", batch_size=16)
    v = world["pairs"]["validation"]
    result = evaluate_reward_model(scorer, v)
    prompts, chosen = list(v["prompt"]), list(v["chosen"])
    order = list(range(len(prompts)))
    random.Random(1).shuffle(order)
    for batch_size in (1, 3, 7):
        scorer.batch_size = batch_size
        got = torch.cat([scorer.score([prompts[i] for i in order[s:s + 5]], [chosen[i] for i in order[s:s + 5]])
                         for s in range(0, len(order), 5)])
        torch.testing.assert_close(got, torch.as_tensor(result.rewards_chosen, dtype=torch.float32)[order],
                                   atol=1e-5, rtol=0)


def test_resume_from_checkpoint(world, tmp_path):
    tok = world["tok"]
    policy = world["root"] / "policy"
    cfg = RewardStageConfig(max_steps=4, save_steps=4, eval_steps=0, max_length=96, n_reference=8)
    first = train_reward_model(policy, tok, world["pairs"], tmp_path / "rm", cfg, [])
    assert first.global_step == 4 and (tmp_path / "rm" / "checkpoints" / "checkpoint-4").is_dir()
    steps: list[int] = []
    second = train_reward_model(policy, tok, world["pairs"], tmp_path / "rm",
                                cfg.model_copy(update={"max_steps": 6, "logging_steps": 1}), [],
                                log=lambda m, s: steps.append(s))
    assert second.global_step == 6
    assert steps and min(steps) > 4, steps  # steps 5 and 6 only


def test_lora_trains_and_saves_a_plain_model(world, tmp_path):
    tok = world["tok"]
    cfg = RewardStageConfig(max_steps=3, eval_steps=0, save_steps=100, max_length=96, n_reference=8,
                            lora={"r": 4, "alpha": 8})
    res = train_reward_model(world["root"] / "policy", tok, world["pairs"], tmp_path / "rm", cfg, [])
    assert res.global_step == 3
    assert not (tmp_path / "rm" / "adapter_config.json").exists()  # merged into the base
    scorer = RewardScorer.from_pretrained(tmp_path / "rm")
    assert torch.isfinite(scorer.score(["x TL;DR:"], [" kind"])).all()


def test_clear_errors():
    with pytest.raises(FileNotFoundError, match=REWARD_CONFIG_NAME):
        RewardFileConfig.load("/nonexistent/dir")
    with pytest.raises(ValueError, match="column"):
        tokenize_pairs(Dataset.from_dict({"prompt": ["a"], "chosen": ["b"]}), None, 8, False)


def test_trl_gpu_defaults_are_overridden(tmp_path):
    """TRL defaults to bf16 and gradient checkpointing; ours follow our config (off on CPU)."""
    args = make_reward_config(RewardStageConfig(), tmp_path, [], has_eval=True)
    assert not args.bf16 and not args.gradient_checkpointing and not args.activation_checkpointing
    assert args.train_sampling_strategy == "group_by_length" and args.learning_rate == RewardStageConfig().learning_rate
    on = make_reward_config(RewardStageConfig(gradient_checkpointing=True, group_by_length=False), tmp_path, [], True)
    assert on.gradient_checkpointing and on.train_sampling_strategy == "random"
