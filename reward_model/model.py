"""Reward model construction: `AutoModelForSequenceClassification(num_labels=1)` over any base.

    from reward_model.model import build_reward_model
    rm = build_reward_model("runs/demo/sft/model", tokenizer)       # from the SFT policy (same tokenizer)
    rm = build_reward_model(GPT2Config(...), tokenizer)             # any HF architecture, from a config

Loading a causal-LM checkpoint into a sequence-classification class drops `lm_head` and adds a random
`score` head (Stiennon et al. initialize the RM from the supervised policy the same way). The config gets
the tokenizer's pad id: HF heads use it to find the last token, and TRL's trainer refuses none.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from data.special_tokens import PAD_TOKEN


def ensure_distinct_pad(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give the tokenizer a pad token distinct from eos (pad == eos makes the RM read the token before
    a trailing EOS); True when a token was added."""
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return False
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return True


def _quiet_head_swap():
    """Silence the expected 'score.weight newly initialized / lm_head unexpected' load report."""
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning

        return suppress_seqcls_warning()
    except ImportError:  # pragma: no cover - only the message changes
        return contextlib.nullcontext()


def build_reward_model(
    source: str | Path | PretrainedConfig,
    tokenizer: PreTrainedTokenizerBase,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> PreTrainedModel:
    """A one-logit sequence-classification model whose config carries the tokenizer's pad id.

    `source` is a hub name / local directory (weights loaded, head new) or a `PretrainedConfig` (random
    init, for tests and from-scratch runs). Embeddings grow when the tokenizer has more tokens than the
    model (e.g. a pad token was added).
    """
    ensure_distinct_pad(tokenizer)
    torch.manual_seed(seed)  # the new head's initialization
    if isinstance(source, PretrainedConfig):
        config = source.__class__.from_dict({**source.to_dict(), "num_labels": 1})
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    else:
        with _quiet_head_swap():
            model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=1, dtype=dtype)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    text_config = model.config.get_text_config()
    text_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        text_config.eos_token_id = tokenizer.eos_token_id
    return model


def check_reward_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Fail early, naming the field, on the settings that make scores silently wrong."""
    if model.config.num_labels != 1:
        raise ValueError(f"reward model config.num_labels={model.config.num_labels}; expected 1")
    pad = model.config.get_text_config().pad_token_id
    if pad is None or pad != tokenizer.pad_token_id:
        raise ValueError(
            f"reward model config.pad_token_id={pad} but tokenizer.pad_token_id={tokenizer.pad_token_id}: "
            "build it with reward_model.model.build_reward_model"
        )
    if tokenizer.eos_token_id is not None and tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError(
            f"tokenizer pad_token == eos_token ({tokenizer.eos_token!r}): the head would read the token before "
            "the EOS; use reward_model.model.ensure_distinct_pad"
        )
