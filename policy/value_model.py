"""PPO's critic: a scalar-head model over the policy's tokens, where it starts, and the module that trains it
together with the policy.

    value_model = build_value_model(policy, critic_init_dir("reward_model", rm_dir, same_vocab(tok, rm_tok)))
    model = PolicyAndValue(policy, value_model)     # one optimizer, one DDP/DeepSpeed wrapper

N+ detail: the critic may start as the reward model (it then predicts the score of prefixes at first); a
reward model reading other tokens cannot, and the policy's backbone with a zero head is used instead.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from policy.sampling import concat_query_response, response_logits


def build_value_model(policy: PreTrainedModel, reward_model_dir: str | Path | None = None) -> PreTrainedModel:
    """Scalar-head value model: from the reward model directory when given (N+ detail: the critic starts as
    the RM), else the policy's backbone with a fresh zero head."""
    if reward_model_dir is not None:
        model = AutoModelForSequenceClassification.from_pretrained(str(reward_model_dir), num_labels=1)
    else:
        config = copy.deepcopy(policy.config)
        config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(config)
        model.base_model.load_state_dict(policy.base_model.state_dict())
        nn.init.zeros_(_value_head(model).weight)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = policy.config.pad_token_id
    return model


def _value_head(model: PreTrainedModel) -> nn.Module:
    for name in ("score", "classifier", "v_head"):
        if hasattr(model, name):
            return getattr(model, name)
    raise ValueError(f"value model {type(model).__name__} has no scalar head named score/classifier/v_head")


class PolicyAndValue(nn.Module):
    """Policy and value model as one module, so one optimizer and one DDP/DeepSpeed wrapper cover both."""

    def __init__(self, policy: PreTrainedModel, value_model: PreTrainedModel) -> None:
        super().__init__()
        self.policy = policy
        self.value_model = value_model

    def values(self, query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor) -> torch.Tensor:
        """[B, R] value of the state before each response token (hidden state at position q-1+t)."""
        input_ids, attention_mask, position_ids = concat_query_response(query_ids, query_mask, response_ids)
        hidden = self.value_model.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state  # [B, Q+R, H]
        values = _value_head(self.value_model)(hidden).squeeze(-1)  # [B, Q+R]
        return values[:, query_ids.size(1) - 1 : -1].float()

    def forward(
        self, query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = response_logits(self.policy, query_ids, query_mask, response_ids, temperature)  # [B, R, V]
        return logits, self.values(query_ids, query_mask, response_ids)


def same_vocab(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """Whether two tokenizers map the same strings to the same ids (a reward model can then be the critic)."""
    return a.get_vocab() == b.get_vocab()


def critic_init_dir(choice: str, rm_dir: Path, same_vocab: bool) -> Path | None:
    """Directory the value model starts from (`rl.critic_init`), or None for the policy with a zero head. A reward
    model reading other tokens cannot be a critic over the policy's tokens, so it falls back to the policy."""
    if choice == "policy":
        return None
    if not same_vocab:
        print("[ppo] the reward model's tokenizer differs from the policy's: value model starts from the policy")
        return None
    return rm_dir
