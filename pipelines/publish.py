"""`python -m pipelines publish`: push a run's dataset and models, each with its card, to the Hugging Face Hub.

    HF_TOKEN=hf_... python -m pipelines publish --config configs/demo.yaml publish.repo_id=alice/upvote-demo
    python -m pipelines publish --config configs/demo.yaml publish.repo_id=alice/upvote-demo publish.dry_run=true

    part          folder                             Hub repo
    dataset       runs/<name>/build-data             <repo_id>-data          (dataset repo: configs pairs, sft)
    sft_policy    runs/<name>/sft/model              <repo_id>-sft
    reward_model  runs/<name>/train-reward/model     <repo_id>-reward-model
    ppo_policy    runs/<name>/ppo/policy             <repo_id>-ppo

The cards are the README.md files the stages wrote (`pipelines/cards.py`); publishing links them to each other
(the models' `datasets` and `base_model` name the repos just pushed) and lets the Hub validate them. The token
comes from HF_TOKEN or `hf auth login` (`huggingface_hub.get_token`), never from the config, and goes only to
`HfApi`: it is not printed, saved or logged, and error messages have it removed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines import cards
from pipelines.rundir import StageDir

Part = Literal["dataset", "sft_policy", "reward_model", "ppo_policy"]
# part -> (stage, folder under the run root, repo suffix, repo type). Listed in upload order: a model's card can
# only name the dataset and base model repos that exist.
PARTS: dict[str, tuple[str, str, str, str]] = {
    "dataset": ("build-data", "build-data", "-data", "dataset"),
    "sft_policy": ("sft", "sft/model", "-sft", "model"),
    "reward_model": ("train-reward", "train-reward/model", "-reward-model", "model"),
    "ppo_policy": ("ppo", "ppo/policy", "-ppo", "model"),
}
CARD_KIND: dict[str, cards.ModelKind] = {"sft_policy": "sft", "reward_model": "reward", "ppo_policy": "ppo"}
# What of a folder goes up. Dataset: the save_to_disk configs (not the `cache-*.arrow` index files that later
# stages' selects leave in them), the build statistics and the resolved config. Models: the top-level files only
# (sub-folders hold trainer checkpoints and warm-up stages). README.md is pushed apart, once linked.
DATASET_FILES = ["data_card.json", "data_card.md", "config.yaml", *(f"{c}/**" for c in cards.DATASET_CONFIGS)]
IGNORED = ["*cache-*.arrow", "*.tmp", cards.CARD_FILE]
TOKEN_HELP = ("set HF_TOKEN to a Hugging Face write token (https://huggingface.co/settings/tokens), or log in "
              "once with `hf auth login`")


class PublishConfig(BaseModel):
    """Where `python -m pipelines publish` pushes a run. The token is never config: HF_TOKEN or `hf auth login`."""

    model_config = ConfigDict(extra="forbid")

    repo_id: str | None = Field(
        None, description="Hub repo id prefix `namespace/name` (your user or organization): the dataset goes to "
        "<repo_id>-data, the models to <repo_id>-sft, -reward-model and -ppo. None: publish says how to set it.",
    )
    private: bool = Field(True, description="Create the repos private (repos that exist keep their visibility).")
    include: list[Part] = Field(
        ["dataset", "sft_policy", "reward_model", "ppo_policy"], min_length=1,
        description="What to publish; each needs its stage complete (build-data, sft, train-reward, ppo).",
    )
    dry_run: bool = Field(
        False, description="List the folders, files and repo ids publish would upload, and upload nothing "
        "(needs no token and no network).",
    )

    @field_validator("repo_id")
    @classmethod
    def _namespace_and_name(cls, repo_id: str | None) -> str | None:
        if repo_id is None:
            return None
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(repo_id)
        except HFValidationError as err:
            raise ValueError(f"{repo_id!r} is not a Hub repo id: {err}") from None
        if "/" not in repo_id:
            raise ValueError(f"{repo_id!r} has no namespace: write it as <user-or-org>/{repo_id}")
        return repo_id

    @field_validator("include")
    @classmethod
    def _unique(cls, include: list[str]) -> list[str]:
        if len(set(include)) != len(include):
            raise ValueError(f"publish.include lists a part twice: {include}")
        return include


class PublishRefused(Exception):
    """publish cannot run as configured; the message says what to set."""


@dataclass
class Upload:
    """One folder and the repo it goes to."""

    part: str
    stage: str
    folder: Path
    repo_id: str
    repo_type: str
    files: list[str]  # paths relative to `folder`, README.md first
    problem: str = ""  # why it cannot be uploaded ("" = ready)
    card_missing: bool = False  # a stage that finished before cards existed: publish writes the card first

    @property
    def size_mb(self) -> float:
        return sum((self.folder / f).stat().st_size for f in self.files if (self.folder / f).is_file()) / 2**20


def plan(cfg: PublishConfig, run_root: Path) -> list[Upload]:
    """What publish would upload, in upload order, each with the files it would send or the problem in the way."""
    from huggingface_hub.utils import filter_repo_objects

    prefix = cfg.repo_id or "<publish.repo_id>"
    uploads = []
    for part, (stage, folder, suffix, repo_type) in PARTS.items():
        if part not in cfg.include:
            continue
        path = run_root / folder
        problem = ""
        if not StageDir(run_root, stage).is_complete():
            problem = (f"stage {stage} is not complete in {run_root / stage}: run `python -m pipelines {stage} ...` "
                       f"first, or leave {part} out of publish.include")
        files = []
        if path.is_dir():
            found = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
            allow = DATASET_FILES if repo_type == "dataset" else ["*"]
            ignore = IGNORED if repo_type == "dataset" else [*IGNORED, "*/*"]
            files = list(filter_repo_objects(found, allow_patterns=allow, ignore_patterns=ignore))
        card_missing = not problem and not (path / cards.CARD_FILE).is_file()
        uploads.append(Upload(part, stage, path, prefix + suffix, repo_type, [cards.CARD_FILE, *files], problem,
                              card_missing))
    return uploads


def write_missing_cards(uploads: list[Upload], run_root: Path) -> None:
    """Cards for stages that finished before cards existed, from what each stage saved: its resolved config.yaml,
    its metrics.json and the commit in its DONE.json (not this checkout's)."""
    from pydantic import ValidationError

    from pipelines.config import ExperimentConfig

    for up in uploads:
        if not up.card_missing:
            continue
        stage = StageDir(run_root, up.stage)
        try:
            cfg = ExperimentConfig.model_validate(yaml.safe_load((stage.path / "config.yaml").read_text()))
        except ValidationError as err:
            raise PublishRefused(f"{up.part} has no card and {stage.path / 'config.yaml'} no longer validates "
                                 f"({err.error_count()} errors) to write one: rerun `python -m pipelines {up.stage} "
                                 "--force ...`") from None
        commit = json.loads(stage.done_file.read_text()).get("commit", "unknown")
        if up.repo_type == "dataset":
            cards.save_dataset_card(cfg, up.folder, commit)
        else:
            cards.save_model_card(cfg, CARD_KIND[up.part], up.folder, stage.metrics(), commit)
        print(f"[publish] {up.part}: wrote the missing card {up.folder / cards.CARD_FILE}")
        up.card_missing = False


def describe(uploads: list[Upload], private: bool) -> str:
    """The plan for people: one block per repo."""
    lines = []
    for up in uploads:
        lines.append(f"  {up.part:<13} {up.folder} -> {up.repo_id} ({up.repo_type} repo, "
                     f"{'private' if private else 'public'})")
        if up.problem:
            lines.append(f"    cannot upload: {up.problem}")
        else:
            if up.card_missing:
                lines.append(f"    no {cards.CARD_FILE} yet (the stage predates cards): publish writes it first")
            tops = sorted({f.split('/')[0] + ('/' if '/' in f else '') for f in up.files})
            lines.append(f"    {len(up.files)} files, {up.size_mb:.1f} MB: {', '.join(tops)}")
    return "\n".join(lines)


def blockers(cfg: PublishConfig, token: str | None, offline: bool) -> list[str]:
    """Why a real upload cannot start, each with what to set (empty: it can)."""
    out = []
    if cfg.repo_id is None:
        out.append("publish.repo_id is not set: add publish.repo_id=<user-or-org>/<name> (the dataset goes to "
                   "<name>-data, the models to <name>-sft, -reward-model, -ppo)")
    if not token:
        out.append(f"no Hugging Face token: {TOKEN_HELP}")
    if offline:
        out.append("HF_HUB_OFFLINE=1 is set, so huggingface_hub makes no network calls: rerun with HF_HUB_OFFLINE=0 "
                   "(`make publish` does)")
    return out


def _linked_card(up: Upload, pushed: dict[str, str], include_sft_base: bool):
    """The folder's card with the Hub ids of the repos pushed before it: the models name the dataset and their base."""
    from huggingface_hub import DatasetCard, ModelCard

    text = (up.folder / cards.CARD_FILE).read_text()
    here = "<this repo or folder>" if up.repo_type == "dataset" else "<this folder>"
    text = text.replace(here, up.repo_id)
    if up.repo_type == "dataset":
        return DatasetCard(text)
    card = ModelCard(text)
    dataset = pushed.get("dataset")
    if dataset:
        card.data.datasets = [dataset]
        for result in card.data.eval_results or []:
            result.dataset_type, result.dataset_name = dataset, f"{dataset} ({result.dataset_config})"
    sft = pushed.get("sft_policy")
    if sft and (up.part == "ppo_policy" or (up.part == "reward_model" and include_sft_base)):
        card.data.base_model, card.data.base_model_relation = sft, "finetune"
    return card


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a failed Hub call raises: huggingface_hub's errors (OSError), its HTTP client's transport errors (the
    client is httpx2 in huggingface_hub 2.x, httpx before) and ValueError (the Hub's card validation)."""
    import importlib

    found: list[type[BaseException]] = [OSError, ValueError]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).HTTPError)
        except ImportError:
            pass
    return tuple(found)


def upload(uploads: list[Upload], cfg: PublishConfig, token: str, run_name: str, commit: str,
           rm_from_sft: bool, record: dict[str, dict]) -> None:
    """Create each repo (exist_ok), upload its folder, then push its linked card (the Hub validates it); each
    part goes into `record` once pushed, so a failure can say what is already up."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    pushed: dict[str, str] = {}
    for up in uploads:
        print(f"[publish] {up.part}: {up.folder} -> {up.repo_id}")
        url = api.create_repo(up.repo_id, repo_type=up.repo_type, private=cfg.private, exist_ok=True)
        message = f"upvote-rlhf {run_name}: {up.part} (commit {commit})"
        files = [f for f in up.files if f != cards.CARD_FILE]  # exact paths: allow_patterns=None would send all
        info = api.upload_folder(repo_id=up.repo_id, repo_type=up.repo_type, folder_path=up.folder,
                                 allow_patterns=files, commit_message=message) if files else None
        _linked_card(up, pushed, rm_from_sft).push_to_hub(up.repo_id, token=token, repo_type=up.repo_type,
                                                          commit_message=f"{message}: card")
        pushed[up.part] = up.repo_id
        record[up.part] = {"repo_id": up.repo_id, "repo_type": up.repo_type, "url": str(url),
                           "commit": getattr(info, "oid", None), "files": len(up.files)}


def publish(cfg: PublishConfig, run_root: Path, run_name: str, commit: str, rm_from_sft: bool,
            out_dir: Path) -> dict[str, float]:
    """The publish stage: plan, refuse with what to set, or upload; writes `published.json` (no token) to out_dir."""
    from huggingface_hub import constants, get_token

    uploads = plan(cfg, run_root)
    token = get_token()
    offline = constants.HF_HUB_OFFLINE
    if cfg.dry_run:
        print(f"[publish] dry run, nothing is uploaded. Run {run_root} would go to:\n{describe(uploads, cfg.private)}")
        waiting = blockers(cfg, token, offline)
        print("[publish] a real upload " + ("would first need:\n  - " + "\n  - ".join(waiting) if waiting else
                                            "can start: a token was found and the network is allowed"))
        return {"publish/dry_run": 1, "publish/parts": len(uploads)}
    problems = blockers(cfg, token, offline) + [f"{up.part}: {up.problem}" for up in uploads if up.problem]
    if problems:
        raise PublishRefused("publish cannot start:\n  - " + "\n  - ".join(problems))
    write_missing_cards(uploads, run_root)
    record: dict[str, dict] = {}
    try:
        upload(uploads, cfg, token, run_name, commit, rm_from_sft, record)
    except hub_errors() as err:
        done = ", ".join(record) or "nothing"
        hint = f" A 401/403 is the token's: {TOKEN_HELP}." if re.search(r"\b40[13]\b", str(err)) else ""
        raise PublishRefused(f"the Hub refused or could not be reached ({type(err).__name__}: "
                             f"{str(err).replace(token, '<token>')}); pushed before that: {done}. Rerun publish once "
                             f"fixed: it uploads into the same repos again.{hint}") from None
    (out_dir / "published.json").write_text(json.dumps(record, indent=2))
    for part, info in record.items():
        print(f"[publish] {part}: {info['url']}")
    return {"publish/dry_run": 0, "publish/parts": len(record)}

