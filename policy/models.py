"""Policy models and tokenizers: any HF causal LM by name, or a tiny GPT-2 built from a config.

The embedded default has no model hub to download from, so it trains a byte-level BPE on the scraped corpus
and builds a few-million-parameter GPT-2 from a config. Both are saved with `save_pretrained`, so every
later stage (SFT, reward model, PPO, steering) loads them the ordinary way, exactly as it would load
`EleutherAI/pythia-1b-deduped`.

Special tokens are explicit and distinct: `pad != eos` (pad == eos makes a reward model read
the token before a trailing EOS, and makes SFT stop learning to emit EOS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from data.special_tokens import EOS_TOKEN, PAD_TOKEN


class TokenizerSpec(BaseModel):
    """Where the tokenizer comes from: a hub name/path, or trained here on the corpus."""

    model_config = ConfigDict(extra="forbid")

    name_or_path: str | None = Field(
        None, description="HF tokenizer name or local path; None trains a byte-level BPE on the corpus."
    )
    vocab_size: int = Field(4096, ge=300, description="Vocabulary size of the locally trained BPE.")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a BPE merge.")
    max_training_texts: int = Field(50_000, ge=1, description="Cap on corpus texts used to train the BPE.")


class ModelSpec(BaseModel):
    """Which causal LM: a hub name/path, or a model of these sizes built from a config (random weights)."""

    model_config = ConfigDict(extra="forbid")

    name_or_path: str | None = Field(
        None, description="HF causal LM name or local path; None builds `architecture` from the sizes below."
    )
    architecture: Literal["gpt2", "gpt_neox"] = Field(
        "gpt2", description="Built from a config: gpt2 (absolute positions; the CPU demo) or gpt_neox (Pythia's "
        "design: rotary on a quarter of each head, parallel residual, MLP 4x wide; 12 x 768 is Pythia-160M's shape).",
    )
    n_layer: int = Field(4, ge=1, description="Transformer blocks.")
    n_embd: int = Field(256, ge=8, description="Hidden size.")
    n_head: int = Field(4, ge=1, description="Attention heads (must divide n_embd).")
    n_positions: int = Field(1024, ge=16, description="Context length.")
    dropout: float = Field(0.0, ge=0.0, le=1.0, description="Dropout (0 keeps RL exact).")
    seed: int = Field(0, description="Seed of the random initialization; unset in an experiment config = run.seed.")


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2, extra_special_tokens: list[str] = ()
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts` (about a second for a few MB), with distinct pad and eos tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = [EOS_TOKEN, PAD_TOKEN, *extra_special_tokens]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # padding_side must be given at construction: set afterwards it is not saved by save_pretrained.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="right",
        model_max_length=1024,
    )


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer and make sure it has a pad token distinct from eos."""
    tok = AutoTokenizer.from_pretrained(str(name_or_path))
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    return tok


def build_tiny_causal_lm(tokenizer: PreTrainedTokenizerBase, spec: ModelSpec) -> PreTrainedModel:
    """A `spec.architecture` model of `spec`'s size whose config carries the tokenizer's ids (GPT2Config defaults
    them to 50256)."""
    if spec.n_embd % spec.n_head:
        raise ValueError(f"policy.n_embd={spec.n_embd} must be divisible by policy.n_head={spec.n_head}")
    torch.manual_seed(spec.seed)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if spec.architecture == "gpt_neox":
        config = GPTNeoXConfig(
            vocab_size=len(tokenizer), hidden_size=spec.n_embd, num_hidden_layers=spec.n_layer,
            num_attention_heads=spec.n_head, intermediate_size=4 * spec.n_embd,
            max_position_embeddings=spec.n_positions, rotary_pct=0.25, use_parallel_residual=True,
            attention_dropout=spec.dropout, hidden_dropout=spec.dropout, tie_word_embeddings=False, **ids,
        )
        return GPTNeoXForCausalLM(config)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=spec.n_positions,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        resid_pdrop=spec.dropout,
        embd_pdrop=spec.dropout,
        attn_pdrop=spec.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def load_causal_lm(name_or_path: str | Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Load any HF causal LM; resize its embeddings if the tokenizer gained a pad token."""
    return AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=dtype)


def _is_dropout_rate(name: str, value: object) -> bool:
    """`attention_dropout`, `hidden_dropout`, `attn_pdrop`, `resid_pdrop`, ... holding a number."""
    name = name.lower()
    is_rate = isinstance(value, (int, float)) and not isinstance(value, bool)
    return is_rate and ("dropout" in name or name.endswith("pdrop"))


def disable_dropout(model: torch.nn.Module) -> None:
    """RLHF wants deterministic log-probs for the same input (N+ implementation details, #3).

    Three places hold a dropout rate: `nn.Dropout` modules (GPT-2), floats that attention modules read at
    every forward (GPT-NeoX and Llama keep `self.attention_dropout` and pass it to the attention kernel), and
    the config (`attn_pdrop`, `attention_dropout`, `hidden_dropout`, ...), which is saved with the model and
    read again by whoever rebuilds it (a value model from the policy's config, TRL's reference model from its
    directory). All three are set to 0.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name, value in vars(module).items():
            if _is_dropout_rate(name, value):
                setattr(module, name, 0.0)
    config = getattr(model, "config", None)
    if config is None:
        return
    configs = {id(c): c for c in (config, config.get_text_config() if hasattr(config, "get_text_config") else config)}
    for c in configs.values():
        for name, value in list(vars(c).items()):
            if _is_dropout_rate(name, value):
                setattr(c, name, 0.0)
