"""The experiment config: one YAML per experiment, one section per stage, validated by pydantic.

Each section's class is defined beside the code it configures (one place documents each setting);
this module only composes them. `configs/demo.yaml` is the embedded default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from data.sim.server import ServerConfig
from data.sim.world import WorldConfig
from data.sources.dumps import DumpConfig
from data.sources.hub import HubConfig
from data.sources.reddit_api import ScrapeConfig
from pipelines.build import DatasetsConfig
from pipelines.study import StudyConfig
from policy.device import DeviceChoice, DtypeChoice
from policy.evaluate import EvalPolicyConfig, settings
from policy.models import ModelSpec, TokenizerSpec
from policy.ppo_config import PPOConfig
from policy.sft import PretrainConfig, SFTStageConfig
from pipelines.publish import PublishConfig
from pipelines.steer_suite import SteerStageConfig
from policy.trl_baselines import TRLBaselineConfig, inherit_from_ppo
from reward_model.train import RewardStageConfig


# Sections whose `seed` is run.seed unless set in the config (resolved once, on loading).
SEEDED_SECTIONS = ("policy", "sft", "reward", "ppo", "eval_policy", "steer")


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
    seed: int = Field(
        0, description="Global seed (python, numpy, torch) set at the start of every stage, and the seed of every "
        f"section that trains or samples ({', '.join(SEEDED_SECTIONS)}, and through ppo rl.baselines) unless that "
        "section sets its own. The data (world, data) keeps its own seeds: seeds compare models on one dataset.",
    )
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; None = torch's default.")
    device: DeviceChoice = Field(
        "auto", description="Where every model of every stage lives: auto (CUDA when torch sees a GPU, else the "
        "CPU), cpu, or cuda (an error without one). Resolved once per stage, written to <stage>/devices.json.",
    )
    dtype: DtypeChoice = Field(
        "float32", description="Weights of the models a stage only runs (reward model scoring, evaluated and frozen "
        "policies); bfloat16 applies on CUDA only. Trained models keep float32 weights (their section's bf16 = "
        "autocast).",
    )
    wandb: WandbConfig = Field(default_factory=WandbConfig)


class ScrapeSection(BaseModel):
    """Where records come from. Credentials are never config: they come from the environment."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["sim", "reddit", "dumps"] = Field(
        "sim", description="`sim`: the simulated Reddit over HTTP via praw; `reddit`: reddit.com; `dumps`: files."
    )
    refresh: bool = Field(
        False, description="Re-read the scores of stored ids in bulk (reddit.info) instead of scraping new posts."
    )
    reddit: ScrapeConfig = Field(default_factory=ScrapeConfig, description="praw scraper (sources reddit and sim).")
    server: ServerConfig = Field(
        default_factory=ServerConfig, description="The simulated Reddit server (source sim): budget, faults."
    )
    dumps: DumpConfig | None = Field(None, description="Dump files and filters (source=dumps).")
    human_eval: HubConfig | None = Field(
        None,
        description="Human comparisons (summarize_from_feedback shape) for the reward model's human-agreement "
        "evaluation; None skips it.",
    )


class RLSection(BaseModel):
    """The `ppo` stage around PPO itself (`ppo:`): policy snapshots for eval-policy, and the critic-free
    baselines trained in the same stage on the same prompts and reward."""

    model_config = ConfigDict(extra="forbid")

    snapshot_every: int = Field(
        10, ge=1, description="Save the policy (HF layout, ppo/snapshots/step-N) every N PPO updates and at the end: "
        "the points of eval-policy's over-optimization curve.",
    )
    baselines: list[TRLBaselineConfig] = Field(
        default_factory=list,
        description="TRL baselines trained after PPO from the SFT policy, e.g. [{algo: rloo}]; each goes to "
        "ppo/baselines/<algo>/policy and gets a row in eval-policy. Episodes, KL coefficient, temperature, lengths, "
        "seed and bf16 they leave unset are the ppo section's (filled in on loading). Empty: none.",
    )

    critic_init: Literal["reward_model", "policy"] = Field(
        "reward_model",
        description="Where PPO's value model starts: the reward model (N+ detail; needs the policy's tokenizer, "
        "else the policy is used) or the SFT policy's backbone with a zero head (predicts 0 at first).",
    )
    gold_control: bool = Field(
        False,
        description="Simulated world only: also train PPO with the same settings against the hidden gold score "
        "(ppo/gold_control/policy, a row in eval-policy). A control, not a method: it separates 'PPO cannot "
        "learn this' from 'the upvote reward model cannot see it'.",
    )
    gold_control_scale: Literal["reward_model"] | float = Field(
        "reward_model",
        description="What the gold control optimizes: 'reward_model' = gold shifted and scaled so that reference "
        "TL;DRs have the reward model's mean and spread (the same ppo.kl_coef then weighs the KL penalty against "
        "the score as much as it does for the reward model; raw gold's spread is ~8x smaller), or a number: gold "
        "times it (1.0 = raw gold).",
    )

    @field_validator("baselines")
    @classmethod
    def _unique_algos(cls, baselines: list[TRLBaselineConfig]) -> list[TRLBaselineConfig]:
        algos = [b.algo for b in baselines]
        if len(set(algos)) != len(algos):
            raise ValueError(f"rl.baselines lists an algo twice ({algos}): each writes ppo/baselines/<algo>/")
        return baselines


class ExperimentConfig(BaseModel):
    """All stages of one experiment."""

    model_config = ConfigDict(extra="forbid")

    run: RunConfig = Field(default_factory=RunConfig)
    world: WorldConfig = Field(default_factory=WorldConfig)
    scrape: ScrapeSection = Field(default_factory=ScrapeSection)
    data: DatasetsConfig = Field(default_factory=DatasetsConfig)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    policy: ModelSpec = Field(default_factory=ModelSpec)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    sft: SFTStageConfig = Field(default_factory=SFTStageConfig)
    reward: RewardStageConfig = Field(default_factory=RewardStageConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    rl: RLSection = Field(default_factory=RLSection)
    eval_policy: EvalPolicyConfig = Field(default_factory=EvalPolicyConfig)
    steer: SteerStageConfig = Field(default_factory=SteerStageConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)

    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """What validation changed or assumed (e.g. a simulator-only setting switched off): printed once."""
        return self._notes

    @model_validator(mode="after")
    def _resolve_once(self) -> "ExperimentConfig":
        """Every setting whose value is another setting's (a seed left to run.seed, a None that names another
        field) filled in once, here: the saved config.yaml shows the values the stages ran with, a resume compares
        those, and the stages read plain values. Runs before every other check below."""
        # 1. seeds: a section that sets none follows run.seed (pydantic records which fields the config set)
        for name in SEEDED_SECTIONS:
            section = getattr(self, name)
            if "seed" not in section.model_fields_set:
                setattr(self, name, section.model_copy(update={"seed": self.run.seed}))
        # 2. learning rates of warm-up phases and of the critic: None = their section's learning rate
        if self.pretrain.learning_rate is None:
            self.pretrain = self.pretrain.model_copy(update={"learning_rate": self.sft.learning_rate})
        short = self.reward.short_context
        if short.learning_rate is None:
            short = short.model_copy(update={"learning_rate": self.reward.learning_rate})
            self.reward = self.reward.model_copy(update={"short_context": short})
        if self.ppo.value_learning_rate is None:
            self.ppo = self.ppo.model_copy(update={"value_learning_rate": self.ppo.learning_rate})
        # 3. eval-policy samples like PPO (comparable KLs); the steer stage's side-by-side rows like eval-policy
        self.eval_policy = settings(self.eval_policy, self.ppo.temperature, self.ppo.response_length,
                                    self.ppo.max_prompt_length)
        ev, ecfg = self.steer.eval, self.eval_policy
        ev = ev.model_copy(update={
            "samples_per_post": ev.samples_per_post if ev.samples_per_post is not None else ecfg.samples_per_prompt,
            "response_length": ev.response_length if ev.response_length is not None else ecfg.response_length,
            "temperature": ev.temperature if ev.temperature is not None else ecfg.temperature,
        })
        self.steer = self.steer.model_copy(update={"eval": ev})
        # 4. the RL baselines share PPO's budget, KL coefficient, sampling, lengths, seed and precision
        self.rl = self.rl.model_copy(update={"baselines": [inherit_from_ppo(b, self.ppo) for b in self.rl.baselines]})
        return self

    @model_validator(mode="after")
    def _sim_only_settings_off_for_real_sources(self) -> "ExperimentConfig":
        # A preset written for the simulator (demo.yaml turns the gold control on) must still run on reddit.com
        # or dumps: the control needs the hidden gold score that only the simulated world has.
        if self.rl.gold_control and self.scrape.source != "sim":
            self.rl.gold_control = False
            self._notes.append(
                f"rl.gold_control switched off: scrape.source={self.scrape.source} has no hidden gold score "
                "(only the simulated world has one)"
            )
        return self

    @model_validator(mode="after")
    def _lengths_agree(self) -> "ExperimentConfig":
        """Prompt, response and model limits agree, so no stage cuts what another one built.

        Prompts are built to fit `data.prompt.max_prompt_tokens`; a model or stage with a smaller cap would cut
        them, and the cut falls on the prompt's head (SUBREDDIT and TITLE) or on the response.
        """
        prompt = self.data.prompt.max_prompt_tokens
        comment = self.data.pairs.comments.max_response_tokens
        tldr = self.data.sft.max_completion_tokens
        checks = [
            ("reward.max_length", self.reward.max_length, prompt + max(comment, tldr, self.ppo.response_length) + 1,
             f"data.prompt.max_prompt_tokens ({prompt}) + the longest response (data.pairs.comments."
             f"max_response_tokens {comment}, data.sft.max_completion_tokens {tldr}, ppo.response_length "
             f"{self.ppo.response_length}) + 1 EOS"),
            ("sft.max_length", self.sft.max_length, prompt + tldr + 1,
             f"data.prompt.max_prompt_tokens ({prompt}) + data.sft.max_completion_tokens ({tldr}) + 1 EOS"),
            ("ppo.max_prompt_length", self.ppo.max_prompt_length, prompt,
             f"data.prompt.max_prompt_tokens ({prompt}): PPO keeps a prompt's last tokens, so a shorter cap "
             "drops its SUBREDDIT and TITLE"),
        ]
        if self.policy.name_or_path is None:
            checks.append(("policy.n_positions", self.policy.n_positions,
                           max(self.sft.max_length, prompt + self.ppo.response_length),
                           f"sft.max_length ({self.sft.max_length}) and data.prompt.max_prompt_tokens + "
                           f"ppo.response_length ({prompt + self.ppo.response_length})"))
        errors = [f"{key}={value} is below {need} = {why}; raise {key} or lower the others"
                  for key, value, need, why in checks if value < need]
        if self.policy.name_or_path is None:  # a policy built from config (and the reward model made from it)
            caps = [("sft.max_length", self.sft.max_length)]
            if self.reward.model_name_or_path is None:
                caps.append(("reward.max_length", self.reward.max_length))
            errors += [f"{key}={value} is above policy.n_positions={self.policy.n_positions}, the model's context"
                       for key, value in caps if value > self.policy.n_positions]
        if errors:
            raise ValueError("lengths disagree: " + "; ".join(errors))
        return self
