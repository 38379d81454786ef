"""The experiment config: one YAML per experiment, one section per stage, validated by pydantic.

Each section's class is defined beside the code it configures (one place documents each setting);
this module only composes them. `configs/demo.yaml` is the embedded default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from policy.models import ModelSpec, TokenizerSpec


class WandbConfig(BaseModel):
    """Weights & Biases: offline files by default; `wandb sync` or WANDB_MODE=online + a key publishes."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Log each stage as a W&B run (files under runs/<name>/wandb).")
    project: str = Field("upvote-rlhf", description="W&B project name.")
    entity: str | None = Field(None, description="W&B entity (team/user); None = the key's default.")
    mode: Literal["offline", "online", "disabled"] | None = Field(
        None, description="Overrides WANDB_MODE; None keeps the environment's value (offline if unset)."
    )


class RunConfig(BaseModel):
    """Where a pipeline writes and how it is seeded."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("demo", description="Run directory name: outputs go to <root>/<name>/<stage>/.")
    root: str = Field("runs", description="Parent folder of run directories.")
    seed: int = Field(0, description="Global seed (python, numpy, torch) set at the start of every stage.")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; None = torch's default.")
    wandb: WandbConfig = Field(default_factory=WandbConfig)


class ExperimentConfig(BaseModel):
    """All stages of one experiment."""

    model_config = ConfigDict(extra="forbid")

    run: RunConfig = Field(default_factory=RunConfig)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    policy: ModelSpec = Field(default_factory=ModelSpec)
