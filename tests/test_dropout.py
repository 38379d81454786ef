"""`disable_dropout` turns dropout off in every architecture the configs name: GPT-2 (the demo), GPT-NeoX
(Pythia: configs/tldr_pythia.yaml, configs/gpu_demo.yaml) and Llama. GPT-NeoX and Llama keep their attention
dropout as a float read at every forward, which setting `nn.Dropout.p` alone missed."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig

from policy.models import disable_dropout
from policy.value_model import build_value_model

SMALL = dict(vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
CONFIGS = {
    "gpt2": GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=32, attn_pdrop=0.5, resid_pdrop=0.5,
                       embd_pdrop=0.5, **SMALL),
    "gpt_neox": GPTNeoXConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=32, attention_dropout=0.5, hidden_dropout=0.5, **SMALL),
    "llama": LlamaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=64, max_position_embeddings=32, attention_dropout=0.5, **SMALL),
}


def _two_forwards(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10]])
    torch.manual_seed(0)
    first = model(input_ids=ids).logits
    torch.manual_seed(1)
    return first, model(input_ids=ids).logits


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_dropout_off_in_every_form(arch: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[arch]).train()
    a, b = _two_forwards(model)
    assert not torch.allclose(a, b)  # dropout is on: two forwards differ (so the check below can fail)
    disable_dropout(model)
    a, b = _two_forwards(model.train())
    assert torch.equal(a, b)  # in train mode, as PPO's epochs run
    rates = {k: v for k, v in vars(model.config).items() if "dropout" in k or k.endswith("pdrop")}
    assert rates and all(v == 0.0 for v in rates.values()), rates
    # whoever rebuilds the model from its config or directory (value model, TRL's reference) gets no dropout
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).train()
    assert torch.equal(*_two_forwards(reloaded))
    value = build_value_model(model).train()
    hidden = [value.base_model(input_ids=torch.tensor([[3, 4, 5, 6]])).last_hidden_state for _ in range(2)]
    assert torch.equal(*hidden)


def test_policy_architecture_gpt_neox_is_pythias_design() -> None:
    """`policy.architecture: gpt_neox` (configs/gpu_demo.yaml): Pythia's layout with the tokenizer's ids."""
    from policy.models import ModelSpec, build_tiny_causal_lm, train_tokenizer

    tok = train_tokenizer(["the cat sat on a mat", "a dog ran in the park"] * 20, vocab_size=300)
    model = build_tiny_causal_lm(tok, ModelSpec(architecture="gpt_neox", n_layer=2, n_embd=32, n_head=4))
    c = model.config
    assert c.model_type == "gpt_neox" and c.rope_parameters["partial_rotary_factor"] == 0.25 and c.use_parallel_residual
    assert c.intermediate_size == 4 * 32 and not c.tie_word_embeddings
    assert (c.pad_token_id, c.eos_token_id) == (tok.pad_token_id, tok.eos_token_id) and c.vocab_size == len(tok)
