"""SFT: a tiny GPT-2 learns a copy task from prompt -> completion rows; loss only on the completion; EOS."""

from __future__ import annotations

import random

import pytest
import torch
from datasets import Dataset, DatasetDict

from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer
from policy.sft import (
    PretrainConfig, SFTStageConfig, greedy_samples, pretrain_lm, short_context_rows, train_sft, whole_text_rows,
)
from trl import SFTConfig, SFTTrainer

COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]
ANIMALS = ["cat", "dog", "horse", "bird"]


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        color, animal = rng.choice(COLORS), rng.choice(ANIMALS)
        prompt = f"SUBREDDIT: r/pets\n\nTITLE: my {animal}\n\nPOST: my {animal} is {color} today.\n\nTL;DR:"
        rows.append({"post_id": f"p{seed}_{i}", "prompt": prompt, "completion": f" {color}"})
    return rows


@pytest.fixture(scope="module")
def task():
    train, val = _rows(240, 0), _rows(24, 1)
    tok = train_tokenizer([r["prompt"] + r["completion"] for r in train], vocab_size=400)
    data = DatasetDict(train=Dataset.from_list(train), validation=Dataset.from_list(val))
    return tok, data


def _model(tok):
    return build_tiny_causal_lm(tok, ModelSpec(n_layer=2, n_embd=64, n_head=2, n_positions=128, seed=0))


def _cfg(**kw) -> SFTStageConfig:
    base = dict(
        learning_rate=3e-3, max_steps=60, per_device_train_batch_size=16, max_length=64, eval_steps=30,
        save_steps=30, logging_steps=10, n_samples=8, max_new_tokens=4, warmup_ratio=0.0,
    )
    return SFTStageConfig(**{**base, **kw})


def test_sft_learns_the_format_and_changes_parameters(task, tmp_path):
    tok, data = task
    model = _model(tok)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logged: list[tuple[dict, int]] = []
    result = train_sft(model, tok, data, tmp_path / "sft", _cfg(), report_to=[], log=lambda m, s: logged.append((m, s)))

    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) >= len(before) // 2, "most parameters should change"
    assert result.global_step == 60
    # From ~ln(400) = 6 nats per token at init to about "which of 6 colors" (ln 6 / 2 tokens ~ 0.9).
    assert result.metrics["sft/eval/loss"] < 1.3
    assert any(k == "sft/train/loss" for m, _ in logged for k in m)
    assert any(k == "sft/eval/loss" for m, _ in logged for k in m)
    # Greedy samples are one color word and then stop: the TL;DR format and the EOS were learned.
    assert len(result.samples) == 8
    assert all(s["generated"].strip() in COLORS for s in result.samples), result.samples
    # Saved with save_pretrained and reloadable.
    assert (tmp_path / "sft" / "config.json").exists() and (tmp_path / "sft" / "tokenizer.json").exists()


def test_loss_is_on_completion_only_with_eos(task, tmp_path):
    """What TRL does with prompt/completion rows: prompt masked (-100), EOS appended to the completion."""
    tok, data = task
    trainer = SFTTrainer(
        model=_model(tok),
        args=SFTConfig(output_dir=str(tmp_path), bf16=False, gradient_checkpointing=False, report_to=[],
                       max_length=64),
        train_dataset=data["validation"].select_columns(["prompt", "completion"]),
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    n_prompt = len(tok(data["validation"][0]["prompt"])["input_ids"])
    assert (labels[:n_prompt] == -100).all()
    target = labels[labels != -100]
    assert target[-1].item() == tok.eos_token_id
    assert tok.decode(target[:-1]) == data["validation"][0]["completion"]
    assert ids[-1].item() == tok.eos_token_id


def test_too_long_rows_are_dropped_and_resume_continues(task, tmp_path):
    tok, data = task
    long_rows = [dict(r, prompt=r["prompt"].replace("today.", "today. " + "my cat is red. " * 8)) for r in _rows(5, 7)]
    train = Dataset.from_list(list(data["train"]) + long_rows)
    data = DatasetDict(train=train, validation=data["validation"])
    out = tmp_path / "sft"
    cfg = dict(max_steps=10, max_length=40, n_samples=0, save_steps=10, eval_steps=0)
    short = train_sft(_model(tok), tok, data, out, _cfg(**cfg), [])
    assert short.n_dropped_too_long == 5 and short.n_train_rows == 240
    assert (out / "checkpoints" / "checkpoint-10").is_dir()
    # A second call with more steps resumes from checkpoint-10 instead of starting over.
    steps: list[int] = []
    res = train_sft(_model(tok), tok, data, out, _cfg(**{**cfg, "max_steps": 14, "logging_steps": 1}), [],
                    log=lambda m, s: steps.append(s))
    assert res.global_step == 14
    assert steps and min(steps) > 10, steps  # only steps 11..14 ran


def test_short_context_rows_drop_only_the_post(task):
    _, data = task
    short = short_context_rows(data["validation"])
    assert short["completion"] == data["validation"]["completion"]
    for full, cut in zip(data["validation"]["prompt"], short["prompt"]):
        assert "POST:" in full and "POST:" not in cut
        assert cut.startswith(full[: full.index("\n\nPOST:")]) and cut.endswith("\n\nTL;DR:")


def test_short_context_warmup_runs_once_before_full_prompts(task, tmp_path):
    tok, data = task
    out = tmp_path / "sft"
    cfg = _cfg(short_context_steps=8, max_steps=4, n_samples=0, eval_steps=0, save_steps=100, logging_steps=1)
    keys: list[str] = []
    res = train_sft(_model(tok), tok, data, out, cfg, [], log=lambda m, s: keys.extend(m))
    assert (out / "short_context" / "WARMUP_DONE").exists()
    assert "sft_short/train/loss" in keys and "sft/train/loss" in keys
    assert res.global_step == 4  # the full-prompt phase has its own step count
    # A rerun loads the finished warm-up instead of training it again.
    keys.clear()
    train_sft(_model(tok), tok, data, out, cfg.model_copy(update={"resume": False}), [],
              log=lambda m, s: keys.extend(m))
    assert "sft_short/train/loss" not in keys and "sft/train/loss" in keys


def _prompt_nll(model, tok, rows) -> float:
    """Mean NLL of the prompt tokens (what completion-only SFT never trains)."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for prompt in rows["prompt"][:8]:
            ids = tok(prompt, return_tensors="pt").input_ids
            total += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
    return total / n


def test_pretraining_trains_every_token_once_then_sft_starts_from_it(task, tmp_path):
    """`pretrain_lm` (the `pretrain` stage): language modelling on whole texts. Its model predicts the prompts
    themselves, which completion-only SFT of the same length leaves untrained; a rerun loads it, not redoes it."""
    tok, data = task
    first = data["validation"][0]
    assert whole_text_rows(data["validation"])["text"][0] == first["prompt"] + first["completion"]
    out = tmp_path / "pretrain"
    cfg = _cfg(short_context_steps=2, max_steps=2, n_samples=0, eval_steps=0, save_steps=100, logging_steps=1)
    keys: list[str] = []
    result = pretrain_lm(_model(tok), tok, data, out, cfg, PretrainConfig(steps=30), [], log=lambda m, s: keys.extend(m))
    assert result.steps == 30 and (out / "WARMUP_DONE").read_text().startswith("30 steps")
    assert "pretrain/train/loss" in keys and not any(k.startswith("sft") for k in keys)
    from policy.models import load_causal_lm, load_tokenizer

    assert load_tokenizer(out).get_vocab() == tok.get_vocab()  # the folder loads like a hub checkpoint
    completion_only = _model(tok)
    train_sft(completion_only, tok, data, tmp_path / "plain", _cfg(max_steps=30, n_samples=0, eval_steps=0), [])
    pretrained = _prompt_nll(load_causal_lm(out), tok, data["validation"])
    plain = _prompt_nll(completion_only, tok, data["validation"])
    assert pretrained < 0.5 * plain
    keys.clear()
    again = pretrain_lm(_model(tok), tok, data, out, cfg, PretrainConfig(steps=30), [], log=lambda m, s: keys.extend(m))
    assert not keys and again.runtime_s == 0.0
    with pytest.raises(ValueError, match="finished pretrain phase of 30 steps, but 60 are asked for"):
        pretrain_lm(_model(tok), tok, data, out, cfg, PretrainConfig(steps=60))
    # SFT from the pretrained folder: warm-up, then the full prompts.
    train_sft(out, tok, data, tmp_path / "sft", cfg, [], log=lambda m, s: keys.extend(m))
    order = [next(i for i, k in enumerate(keys) if k.startswith(p + "/")) for p in ("sft_short", "sft")]
    assert order == sorted(order), keys
    with pytest.raises(ValueError, match="pretrain.steps is 0"):
        pretrain_lm(_model(tok), tok, data, tmp_path / "none", cfg, PretrainConfig(steps=0))


def test_rejects_pad_equal_eos(task, tmp_path):
    tok, data = task
    bad = train_tokenizer(["a b c"], vocab_size=300)
    bad.pad_token = bad.eos_token
    with pytest.raises(ValueError, match="distinct from eos"):
        train_sft(_model(tok), bad, data, tmp_path, _cfg(), [])


def test_greedy_samples_stop_at_eos(task):
    tok, data = task
    samples = greedy_samples(_model(tok), tok, data["validation"].select(range(2)), max_new_tokens=5)
    assert [s["reference"] for s in samples] == data["validation"]["completion"][:2]
    assert all(isinstance(s["generated"], str) for s in samples)


def test_trl_gpu_defaults_are_overridden(tmp_path):
    from policy.sft import make_sft_config

    args = make_sft_config(SFTStageConfig(), tmp_path, [], has_eval=True)
    assert not args.bf16 and not args.gradient_checkpointing and args.completion_only_loss
    assert args.learning_rate == SFTStageConfig().learning_rate != 2e-5
    assert make_sft_config(SFTStageConfig(gradient_checkpointing=True), tmp_path, [], True).gradient_checkpointing


def test_completion_only_loss_matches_trl_and_projects_only_the_completion(task, tmp_path):
    """policy.sft_loss: on one batch the same loss and gradients as TRL's own compute_loss, while the LM head
    sees only the positions that have a label (TRL, off Triton devices, projects every position)."""
    from policy.sft import make_sft_config
    from policy.sft_loss import CompletionOnlySFTTrainer

    tok, data = task
    model = _model(tok)
    args = make_sft_config(_cfg(), tmp_path, [], has_eval=False)
    trainer = CompletionOnlySFTTrainer(model=model, args=args, train_dataset=data["train"], processing_class=tok)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    n_labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < n_labelled < batch["input_ids"].numel() // 4  # most positions are prompt or padding

    head_rows: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda mod, inp, out: head_rows.append(inp[0].reshape(-1, inp[0].shape[-1]).shape[0]))
    results = {}
    for name, loss_fn in {"ours": trainer.compute_loss, "trl": super(CompletionOnlySFTTrainer, trainer).compute_loss}.items():
        model.zero_grad()
        loss = loss_fn(model, dict(batch))
        loss.backward()
        results[name] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    hook.remove()

    assert head_rows == [n_labelled]  # ours ran the head module on the labelled rows (TRL uses its weight directly)
    (ours, our_grads), (theirs, their_grads) = results["ours"], results["trl"]
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)
    for g_ours, g_trl in zip(our_grads, their_grads):
        assert torch.allclose(g_ours, g_trl, atol=1e-5, rtol=1e-4)
    assert trainer._metrics["train"]["mean_token_accuracy"] and trainer._metrics["train"]["entropy"]


def test_completion_only_loss_leaves_trl_in_charge_when_outputs_are_asked_for(task, tmp_path):
    """Callers that want the model outputs (TRL's prediction path) get TRL's own compute_loss."""
    from policy.sft import make_sft_config
    from policy.sft_loss import CompletionOnlySFTTrainer

    tok, data = task
    model = _model(tok)
    trainer = CompletionOnlySFTTrainer(model=model, args=make_sft_config(_cfg(), tmp_path, [], has_eval=False),
                                       train_dataset=data["train"], processing_class=tok)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert not trainer._compact_loss_applies(model, batch, return_outputs=True)
    assert trainer._compact_loss_applies(model, batch, return_outputs=False)
