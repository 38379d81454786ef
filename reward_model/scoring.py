"""The one reward function: `RewardScorer.score(prompts, responses) -> [batch]`, normalized.

    from reward_model.scoring import RewardScorer
    scorer = RewardScorer.from_pretrained("runs/demo/reward/model")
    rewards = scorer.score(prompts, responses)   # torch.Tensor [batch], float32, on CPU (scored on the model's device)

Texts in, so the reward model's tokenizer may differ from the policy's: PPO, best-of-n, steering and the RM
evaluation all call this, and it tokenizes exactly as training did (`reward_model.encoding`). Responses are
stored "one leading space, no EOS"; the EOS is appended here, as in training.

Normalization (Stiennon et al. 2020, sec. 3.4): a bias is added so that the reference TL;DRs (the SFT rows'
completions on their prompts) score mean 0. It is saved beside the weights in `reward_config.json`, which
PPO reads with the model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from data.prompts import PROMPT_TEMPLATE
from reward_model.encoding import PaddingSide, encode_prompt_response, pad_batch, sequence_scores

log = logging.getLogger(__name__)

REWARD_CONFIG_NAME = "reward_config.json"


class RewardFileConfig(BaseModel):
    """`reward_config.json`: everything besides the weights that a reader needs to score like training."""

    model_config = ConfigDict(extra="forbid")

    bias: float = Field(0.0, description="Added to raw scores so reference TL;DRs score mean 0.")
    raw_reference_mean: float | None = Field(None, description="Mean raw score of the reference TL;DRs.")
    raw_reference_std: float | None = Field(None, description="Std of the raw reference scores (scale of rewards).")
    n_reference: int = Field(0, ge=0, description="How many reference (prompt, TL;DR) rows set the bias.")
    prompt_format: str = Field(PROMPT_TEMPLATE, description="The prompt template the model was trained on.")
    response_format: str = Field(
        "one leading space, no EOS; the scorer appends the tokenizer's EOS",
        description="How responses must look when passed to score().",
    )
    append_eos: bool = Field(True, description="Append the tokenizer's EOS (when it has one) to each sequence.")
    max_length: int | None = Field(
        None, description="Token cap of prompt+response+EOS; longer inputs lose the start of the prompt."
    )
    tokenizer_path: str = Field(".", description="Tokenizer directory, relative to the model directory.")
    padding_side: PaddingSide = Field("right", description="Padding side used when batching.")
    base_model: str | None = Field(None, description="What the reward model was initialized from.")

    @classmethod
    def load(cls, model_dir: str | Path) -> "RewardFileConfig":
        path = Path(model_dir) / REWARD_CONFIG_NAME
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: a reward model directory needs {REWARD_CONFIG_NAME} "
                "(written by reward_model.train.train_reward_model)"
            )
        return cls.model_validate_json(path.read_text())

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / REWARD_CONFIG_NAME
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        return path


class RewardScorer:
    """Batched, normalized scoring of (prompt, response) texts with a sequence-classification reward model."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: RewardFileConfig | None = None,
        batch_size: int = 32,
        device: str | torch.device | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or RewardFileConfig()
        self.batch_size = batch_size
        self.n_truncated = 0  # sequences cut to max_length so far (their prompt's head is lost)
        self._warned_cut = False
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if tokenizer.pad_token_id is None:
            raise ValueError("reward tokenizer has no pad token (tokenizer.pad_token is None)")

    @classmethod
    def from_pretrained(
        cls, path: str | Path, batch_size: int = 32, device: str | torch.device | None = None, dtype=torch.float32
    ) -> "RewardScorer":
        """Load weights, tokenizer and `reward_config.json` from a reward model directory, onto `device` in `dtype`.

        Stages pass the run's device rule (`Context.place` then registers the model); None = CUDA when torch
        sees a GPU, else the CPU (a reward model left on the CPU would score every PPO rollout there).
        """
        device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        path = Path(path)
        config = RewardFileConfig.load(path)
        tokenizer = AutoTokenizer.from_pretrained(str((path / config.tokenizer_path).resolve()))
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=dtype).to(device)
        model.eval()
        return cls(model, tokenizer, config, batch_size=batch_size, device=device)

    @property
    def bias(self) -> float:
        return self.config.bias

    @torch.no_grad()
    def score_raw(
        self,
        prompts: list[str],
        responses: list[str],
        padding_side: PaddingSide | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Unnormalized scores [batch] (float32, CPU), in input order.

        Sequences are sorted by length before batching (little padding), then put back in order.
        """
        if len(prompts) == 0:
            return torch.zeros(0)
        side = padding_side or self.config.padding_side
        ids, n_cut = encode_prompt_response(
            self.tokenizer, prompts, responses, self.config.max_length, self.config.append_eos
        )
        if n_cut and not self._warned_cut:  # once per scorer: PPO scores thousands of batches
            self._warned_cut = True
            log.warning(
                "reward scoring: %d of %d sequences exceed max_length=%d and lose the start of their prompt "
                "(SUBREDDIT and TITLE); the scores of such inputs are not comparable (raise reward.max_length or "
                "shorten prompts with data.prompt.max_prompt_tokens)", n_cut, len(ids), self.config.max_length)
        self.n_truncated += n_cut
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = torch.empty(len(ids), dtype=torch.float32)
        was_training = self.model.training
        self.model.eval()
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc="reward scoring", disable=not progress):
            idx = order[start : start + self.batch_size]
            batch = pad_batch([ids[i] for i in idx], self.tokenizer.pad_token_id, side)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out[idx] = sequence_scores(self.model, **batch).cpu()
        self.model.train(was_training)
        return out

    def score(
        self,
        prompts: list[str],
        responses: list[str],
        padding_side: PaddingSide | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Normalized rewards [batch]: raw score + bias (reference TL;DRs average 0)."""
        return self.score_raw(prompts, responses, padding_side, progress) + self.config.bias

    __call__ = score  # a RewardFn: (prompts, responses) -> [batch]

    def fit_bias(self, prompts: list[str], references: list[str], progress: bool = False) -> RewardFileConfig:
        """Set the bias so the reference responses score mean 0; returns the updated config."""
        if not prompts:
            raise ValueError("normalization needs at least one reference (prompt, completion) row")
        raw = self.score_raw(prompts, references, progress=progress)
        self.config = self.config.model_copy(
            update={
                "bias": -float(raw.mean()),
                "raw_reference_mean": float(raw.mean()),
                "raw_reference_std": float(raw.std()) if len(raw) > 1 else 0.0,
                "n_reference": len(raw),
            }
        )
        return self.config
