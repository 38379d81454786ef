"""Run under torchrun with 2 CPU processes (gloo): a few reward-model steps with one batching way.

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 tests/scripts/ddp_reward.py OUT_DIR shared_prompt|pairs

Every rank writes its initial and final parameters and the mean training loss to OUT_DIR/<batching>-rank<r>.pt,
so a test can check that the ranks agree (gradients were all-reduced through the wrapped model's forward) and
that both batching ways train alike. On a CPU, torchrun needs ACCELERATE_USE_CPU=true, or each process trains
alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict
from transformers import GPT2Config, GPT2ForSequenceClassification

from policy.models import train_tokenizer
from reward_model.train import RewardStageConfig, train_reward_model
from tests.test_reward_model import _pair_rows


def main() -> None:
    out, batching = Path(sys.argv[1]), sys.argv[2]
    rows = _pair_rows(64, 11)
    tok = train_tokenizer([r["prompt"] + r["chosen"] + r["rejected"] for r in rows], vocab_size=400)
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2, num_labels=1,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    ))
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = RewardStageConfig(
        batching=batching, max_steps=4, learning_rate=1e-2, warmup_ratio=0.0, per_device_train_batch_size=8,
        max_length=200, eval_steps=0, save_steps=100, group_by_length=False,  # the same batches both ways
        n_reference=8, resume=False,
    )
    res = train_reward_model(model, tok, DatasetDict(train=Dataset.from_list(rows)), out / batching, cfg, [])
    assert res.batching == batching, res.batching
    state = PartialState()
    torch.save(
        {"params": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "init": init,
         "train_loss": res.metrics["rm/train/train_loss"], "world_size": state.num_processes},
        out / f"{batching}-rank{state.process_index}.pt",
    )


if __name__ == "__main__":
    main()
