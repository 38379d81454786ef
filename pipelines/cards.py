"""Hub cards for what a run trained, written as `README.md` into the folders `python -m pipelines publish` uploads:

    build-data    -> runs/<name>/build-data/README.md          dataset card: configs `pairs`, `sft` (+ cross_post)
    sft           -> runs/<name>/sft/model/README.md           model card of the SFT policy
    train-reward  -> runs/<name>/train-reward/model/README.md  model card of the reward model
    ppo           -> runs/<name>/ppo/policy/README.md          model card of the final PPO policy

Why README.md in the artifact folder: the Hub shows a repo's README.md as its card and reads its YAML header as
metadata (license, sizes, configs and splits, model-index), so a folder uploaded as it is arrives documented. The
header is built with huggingface_hub's card-data classes and `datasets`' own `DatasetInfosDict` (features and
split sizes), never written by hand. Every number in a card is a value of the stage's final metrics (the same
dict `run_stage` writes to metrics.json), and every card names the run, seed, commit and resolved config.

    from pipelines.cards import save_dataset_card, save_model_card
    save_dataset_card(cfg, Path("runs/demo/build-data"), commit)             # -> .../build-data/README.md
    save_model_card(cfg, "reward", Path("runs/demo/train-reward/model"), metrics, commit)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

import datasets
import yaml
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from pipelines.rundir import git_commit
from pipelines.tracking import scrub_secrets

if TYPE_CHECKING:
    from pipelines.config import ExperimentConfig
    from pipelines.stages import Context

ModelKind = Literal["sft", "reward", "ppo"]
CARD_FILE = "README.md"
# The Hub's size buckets (the list `datasets` ships in datasets/utils/resources/size_categories.json).
SIZE_CATEGORIES = tuple((10 ** (3 + k), name) for k, name in enumerate(
    ["n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B",
     "10B<n<100B", "100B<n<1T"]))
# Configs of the dataset repo: build-data's save_to_disk folders. Only `data-*.arrow` are data: the same split
# folders also hold `cache-*.arrow` index files that later stages' shuffles/selects leave behind.
DATASET_CONFIGS = {
    "pairs": "One post and two of its top-level comments; `chosen` is the one Reddit voters scored higher.",
    "sft": "One post as a prompt and its author's own TL;DR as the completion (supervised fine-tuning).",
    "pairs_cross_post": "Author TL;DRs of two posts in one subreddit; the post that scored higher (normalized) wins.",
}
SOURCES = {
    "sim": "the simulated Reddit of this project (`data/sim`), served over HTTP and scraped with praw: synthetic "
           "posts, comments and votes; no person wrote or voted on any of it",
    "reddit": "reddit.com through its official API (praw)",
    "dumps": "Pushshift-style Reddit dump files (zstd NDJSON of submissions and comments)",
}
SOURCE_NAMES = {"sim": "the simulated Reddit", "reddit": "reddit.com", "dumps": "Reddit dump files"}
PROMPT_FORMAT = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
# Real Reddit text belongs to its authors; Reddit's User Agreement governs its reuse.
REDDIT_TERMS = {"license": "other", "license_name": "reddit-user-agreement",
                "license_link": "https://www.redditinc.com/policies/user-agreement"}
PROJECT_LICENSE = "apache-2.0"  # pyproject.toml: the simulator's synthetic text and weights trained on it


@dataclass
class Provenance:
    """What produced an artifact: run, stage, seed, commit, data source and the config sections it used."""

    run_name: str
    stage: str
    seed: int
    commit: str
    source: str  # scrape.source: sim | reddit | dumps
    config: dict[str, Any] = field(default_factory=dict)  # resolved config sections (secrets and salts removed)

    @classmethod
    def of(cls, cfg: "ExperimentConfig", stage: str, commit: str, sections: tuple[str, ...]) -> "Provenance":
        full = cfg.model_dump(mode="json")
        return cls(cfg.run.name, stage, cfg.run.seed, commit, cfg.scrape.source,
                   public_config({k: full[k] for k in sections}))


def public_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as a card may show it: secrets redacted, and so are the scrapers' author-hash salts (with the
    salt, anyone can hash candidate usernames and undo the pseudonymization); only the source's own settings."""
    config = scrub_secrets(dict(config))
    if "scrape" in config:
        scrape = config["scrape"]
        own = {"reddit": "reddit", "sim": "reddit", "dumps": "dumps"}.get(scrape["source"])
        settings = dict(scrape.get(own) or {})
        if settings.get("salt"):
            settings["salt"] = "<not published>"
        config["scrape"] = {"source": scrape["source"], own: settings}
    return config


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket of n examples."""
    return next((name for limit, name in SIZE_CATEGORIES if n < limit), "n>1T")


def hub_model_id(name: str | None) -> str | None:
    """`name` when it is a Hub model id rather than a local folder (the only kind `base_model` may name)."""
    if not name or Path(name).exists():
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def count_parameters(model_dir: Path) -> int:
    """Parameters stored in the folder's safetensors files (read from their headers, no weights loaded)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            total += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return total


def _fmt(x: Any, digits: int = 3) -> str:
    """Counts (int) with thousands separators, measurements (float) with `digits` decimals, None as n/a."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (bool, int)):
        return f"{int(x):,}"
    return f"{x:.{digits}f}"


def _count(x: Any) -> int | None:
    """A count from metrics.json, where counts may be stored as floats (104.0)."""
    return None if x is None else int(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(v if isinstance(v, str) else _fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _provenance_section(prov: Provenance) -> str:
    config = yaml.safe_dump(prov.config, sort_keys=False).rstrip()
    return (
        "## Provenance\n\n"
        + _table(["run", "stage", "seed", "commit", "data source"],
                 [[prov.run_name, f"`{prov.stage}`", str(prov.seed), f"`{prov.commit}`", prov.source]])
        + f"\n\nReproduce with `python -m pipelines {prov.stage} --config <the experiment YAML>` at that commit; the "
        "stage folder's `config.yaml` holds the whole resolved config. The sections this artifact depends on:\n\n"
        f"<details><summary>resolved config</summary>\n\n```yaml\n{config}\n```\n</details>\n"
    )


def _render(card_cls: type, data: Any, body: str) -> Any:
    """A card from card data (YAML header, rendered by huggingface_hub) and a markdown body."""
    return card_cls.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}", body=body)


# ----------------------------------------------------------------------------------------------------------
# dataset card
# ----------------------------------------------------------------------------------------------------------
def _split_info(dd: datasets.DatasetDict) -> datasets.DatasetInfo:
    info = datasets.DatasetInfo(features=next(iter(dd.values())).features)
    info.splits = datasets.SplitDict(
        {s: datasets.SplitInfo(name=s, num_examples=len(dd[s]), num_bytes=dd[s].data.nbytes) for s in dd}
    )
    return info


def _pair_rules(cfg: Mapping[str, Any], by_strategy: Mapping[str, int], has_cross_post: int) -> str:
    """One line per pair strategy: its rule with the configured values, and how many pairs it made."""
    sp, ta, cp, cm = cfg["same_post"], cfg["time_adjacent"], cfg["cross_post"], cfg["comments"]
    rules = [
        ("same_post", sp["enabled"], by_strategy.get("same_post", 0),
         f"two top-level comments on one post; the preferred one scored at least {sp['min_score_ratio']}x the other"
         + (" and was written no earlier than it (so longer exposure cannot explain its lead)"
            if sp["require_chosen_later"] else "")
         + f"; both score >= {sp['min_comment_score']}, the post >= {sp['min_post_score']}, at most "
         f"{sp['max_pairs_per_post'] or 'unlimited'} pairs per post"),
        ("time_adjacent", ta["enabled"], by_strategy.get("time_adjacent", 0),
         f"consecutive sibling comments posted within {ta['max_hour_gap']} h; the one scoring at least "
         f"{ta['min_score_gap']} more wins"),
        ("cross_post", cp["enabled"], has_cross_post,
         f"author TL;DRs of two posts of one subreddit posted within {cp['window_hours']} h, compared by "
         f"{cp['normalization']}-normalized post score (config `pairs_cross_post`)"),
    ]
    lines = [f"- `{name}` ({'on' if on else 'off'}), {_fmt(n)} pairs: {text}." for name, on, n, text in rules]
    excluded = [what for key, what in (("exclude_distinguished", "moderator/admin"), ("exclude_stickied", "stickied"),
                                       ("exclude_submitter", "the post author's (OP)")) if cm.get(key)]
    cap = cfg.get("max_pairs_per_post")
    lines.append(f"- Comments excluded before pairing: deleted, {', '.join(excluded) or 'no others'}. "
                 + (f"At most {cap} pairs per post over all strategies. " if cap else "")
                 + "Exact duplicates removed.")
    return "\n".join(lines)


def _label_section(data_card: Mapping[str, Any], simulated: bool) -> str:
    text = (
        "## What the label means\n\n"
        "`chosen` is the response Reddit's voters scored higher (upvotes minus downvotes, as read at scrape time) "
        "under the rules above; `score_ratio` and `margin` say by how much. It records what one subreddit's voters "
        "rewarded, not quality or truth. Limits:\n\n"
        "- Scores are snapshots: they keep changing after they were read, and Reddit fuzzes them.\n"
        "- Earlier comments are seen by more people; the timestamp rule (`require_chosen_later`) removes the pairs "
        "where exposure alone could explain the lead, not every such bias.\n"
        "- Voters reward agreement, jokes and early, short answers as much as accurate summaries; norms differ "
        "between subreddits, so pairs compare comments of one post (or one subreddit), never across subreddits.\n"
        "- Only top-level comments with intact text are used; deleted and removed content is dropped and counted.\n"
        "- SFT completions are the TL;DRs authors wrote themselves: some are jokes, teasers or incomplete.\n"
    )
    gold = data_card.get("gold_agreement") or {}
    if simulated and gold:
        bayes = data_card.get("bayes_ceiling") or {}
        rows = [[name, g.get("pairs"), g.get("preferred_has_higher_gold"), bayes.get(name)]
                for name, g in sorted(gold.items())]
        text += ("\nIn the simulated world every comment has a hidden gold quality, so the label noise is measured: "
                 "the share of pairs whose preferred side has the higher gold quality, and the best accuracy any "
                 "reward model could reach on those pairs (Bayes ceiling).\n\n"
                 + _table(["pairs", "n", "preferred has higher gold", "Bayes ceiling"], rows) + "\n")
    return text


def _source_section(source: str, config: Mapping[str, Any], records: Mapping[str, Any]) -> str:
    scrape = config.get("scrape", {})
    where = SOURCES.get(source, source)
    if source == "dumps" and scrape.get("dumps"):
        d = scrape["dumps"]
        where += f" ({', '.join(d.get('paths', []))}; subreddits: {', '.join(d.get('subreddits') or ['all'])})"
    elif source == "reddit":
        where += f" (subreddits: {', '.join(scrape.get('reddit', {}).get('subreddits', []))})"
    counts = ", ".join(f"{_fmt(v)} {k.replace('_', ' ')}" for k, v in records.items())
    own = ("Synthetic text generated by this project's code: released under its license (Apache-2.0)."
           if source == "sim" else
           "The text belongs to its Reddit authors and is shared under Reddit's User Agreement "
           "(https://www.redditinc.com/policies/user-agreement); author names are not included (records store "
           "salted hashes). Check those terms before redistributing.")
    return f"## Source\n\nCollected from {where}: {counts}. {own}\n"


def dataset_card(data_dir: Path, prov: Provenance) -> DatasetCard:
    """The dataset card of a build-data folder (`pairs/`, `sft/`, optional `pairs_cross_post/`, `data_card.json`)."""
    data_card = json.loads((data_dir / "data_card.json").read_text())
    present = {name: datasets.load_from_disk(str(data_dir / name)) for name in DATASET_CONFIGS if (data_dir / name).is_dir()}
    simulated = prov.source == "sim"
    total = sum(len(dd[s]) for dd in present.values() for s in dd)
    terms = {"license": PROJECT_LICENSE} if simulated else REDDIT_TERMS
    data = DatasetCardData(
        pretty_name=f"upvote-rlhf {prov.run_name}: Reddit upvote preference pairs and TL;DR rows",
        language=["en"],
        multilinguality=["monolingual"],
        size_categories=[size_category(total)],
        source_datasets=["original"],
        task_categories=["summarization", "text-generation"],
        annotations_creators=["machine-generated" if simulated else "crowdsourced"],  # the votes are the labels
        language_creators=["machine-generated" if simulated else "found"],
        tags=["rlhf", "preference", "reward-modeling", "reddit", "tldr", "upvote-rlhf"] + (["synthetic"] if simulated else []),
        configs=[{"config_name": name, "data_files": [{"split": s, "path": f"{name}/{s}/data-*.arrow"} for s in dd]}
                 for name, dd in present.items()],
        **terms,
    )
    datasets.info.DatasetInfosDict({name: _split_info(dd) for name, dd in present.items()}).to_dataset_card_data(data)

    splits = ("train", "validation", "test")
    rows = [[f"`{name}`", *(len(dd[s]) if s in dd else 0 for s in splits), DATASET_CONFIGS[name]]
            for name, dd in present.items()]
    by_strategy: dict[str, int] = {}
    for per in (data_card.get("pairs_by_subreddit_strategy") or {}).values():
        for strategy, n in per.items():
            by_strategy[strategy] = by_strategy.get(strategy, 0) + n
    n_cross = sum(len(present["pairs_cross_post"][s]) for s in present["pairs_cross_post"]) if "pairs_cross_post" in present else 0
    drops = data_card.get("drops") or {}
    split_rule = data_card.get("split_rule") or {}
    body = (
        f"# {data.pretty_name}\n\n"
        f"Preference pairs and supervised TL;DR rows from Reddit scores, built by `python -m pipelines build-data` "
        f"(run `{prov.run_name}`). Prompts use the format `{PROMPT_FORMAT!r}`; responses start with one space.\n\n"
        "## Configs and splits\n\n"
        + _table(["config", *splits, "a row is"], rows)
        + f"\n\nSplits are by post ({split_rule.get('rule', 'hash')} rule), shared by every config: no post is in "
        "two splits.\n\n```python\nfrom datasets import load_dataset\n"
        "pairs = load_dataset(\"<this repo or folder>\", \"pairs\")   # or datasets.load_from_disk(\"pairs\")\n```\n\n"
        "## Pair rules and their counts\n\n"
        + _pair_rules(prov.config.get("data", {}).get("pairs", {}), by_strategy, n_cross)
        + "\n\nRows dropped, by rule:\n\n"
        + _table(["rule", "rows"], [[f"`{k}`", v] for k, v in drops.items()])
        + "\n\n" + _label_section(data_card, simulated)
        + "\n" + _source_section(prov.source, prov.config, data_card.get("records") or {})
        + "\n" + _provenance_section(prov)
    )
    return _render(DatasetCard, data, body)


# ----------------------------------------------------------------------------------------------------------
# model cards
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ModelFacts:
    """What a model card says about a model beyond its metrics: where it started and what it read."""

    kind: ModelKind
    base_hub_id: str | None  # Hub id of the starting weights, when they came from the Hub
    base: str  # the start in words: hub name, "built from config", "this run's SFT policy"
    data: str  # what it was trained on, in words
    architecture: str
    parameters: int
    tokenizer: str


def _metric_rows(kind: ModelKind, m: Mapping[str, Any], simulated: bool) -> list[list[Any]]:
    """(metric, value, what it is) rows of a model card, from the stage's final metrics."""
    if kind == "reward":
        acc = m.get("rm/accuracy")
        rows = [["held-out pairwise accuracy", f"{_fmt(acc)} [{_fmt(m.get('rm/accuracy_ci_low'))}, "
                 f"{_fmt(m.get('rm/accuracy_ci_high'))}]", f"test pairs (n={_fmt(_count(m.get('rm/n_pairs')))}), 95% Wilson CI"],
                ["baseline: longer wins", m.get("rm/baseline/longer_wins"), "pick the response with more words"],
                ["baseline: later wins", m.get("rm/baseline/later_wins"), "pick the response posted later"],
                ["baseline: random", m.get("rm/baseline/random"), "a seeded coin"],
                ["expected calibration error", m.get("rm/ece"), "sigmoid(r_chosen - r_rejected) vs frequency"]]
        if simulated:
            rows += [["gold accuracy", f"{_fmt(m.get('rm/gold/accuracy'))} [{_fmt(m.get('rm/gold/accuracy_ci_low'))}, "
                      f"{_fmt(m.get('rm/gold/accuracy_ci_high'))}]", "agreement with the hidden gold quality"],
                     ["Bayes ceiling", m.get("rm/bayes_ceiling"), "best accuracy any model could reach on these pairs"]]
        return rows + [["training pairs", _count(m.get("rm_train/pairs")), "incl. added negatives"],
                       ["training steps", _count(m.get("rm_train/steps")), ""]]
    if kind == "sft":
        return [["eval loss", m.get("sft/eval/loss"), "token cross-entropy of the TL;DR, validation rows"],
                ["eval token accuracy", m.get("sft/eval/mean_token_accuracy"), "validation rows"],
                ["train loss", m.get("sft/train/train_loss"), "mean over training"],
                ["training rows", _count(m.get("sft/train_rows")), ""], ["training steps", _count(m.get("sft/steps")), ""]]
    rows = [["score", m.get("objective/scores"), "reward model score with penalties (e.g. no EOS), last update's rollouts"],
            ["raw reward model score", m.get("objective/raw_scores"), "before penalties, last update (training prompts)"],
            ["KL to the SFT policy", m.get("objective/kl"), "summed over response tokens, last update"],
            ["response length", m.get("objective/response_length"), "tokens, last update"],
            ["no-EOS rate", m.get("objective/no_eos_rate"), "responses cut at the length limit"]]
    if simulated and m.get("objective/gold") is not None:
        rows.append(["gold quality", m.get("objective/gold"), "hidden gold score of the last update's responses"])
    return rows + [["PPO updates", _count(m.get("ppo/updates")), f"x {_fmt(_count(m.get('ppo/batch_size')))} episodes"]]


def _eval_results(kind: ModelKind, m: Mapping[str, Any], dataset_id: str) -> list[EvalResult] | None:
    """model-index entries: held-out numbers only (PPO's are training rollouts, so it has none here)."""
    if kind == "reward" and m.get("rm/accuracy") is not None:
        return [EvalResult(task_type="text-classification", task_name="Reddit upvote preference",
                           dataset_type=dataset_id, dataset_name=f"{dataset_id} (pairs)", dataset_config="pairs",
                           dataset_split="test", metric_type="accuracy", metric_name="pairwise accuracy",
                           metric_value=float(m["rm/accuracy"]))]
    if kind == "sft" and m.get("sft/eval/loss") is not None:
        return [EvalResult(task_type="summarization", task_name="Reddit TL;DR", dataset_type=dataset_id,
                           dataset_name=f"{dataset_id} (sft)", dataset_config="sft", dataset_split="validation",
                           metric_type="loss", metric_name="eval loss", metric_value=float(m["sft/eval/loss"]))]
    return None


TITLES = {"sft": "SFT policy", "reward": "reward model", "ppo": "PPO policy"}
WHAT = {
    "sft": "A policy fine-tuned (TRL SFTTrainer) to write a post's TL;DR, on posts whose authors wrote one.",
    "reward": "A Bradley-Terry reward model (TRL RewardTrainer) trained to predict which of two comments on a post "
              "Reddit's voters scored higher; `reward_config.json` holds the normalization bias and the input format.",
    "ppo": "The final policy of PPO against this run's upvote reward model, with a KL penalty to the SFT policy.",
}
USAGE = {
    "reward": "```python\nfrom reward_model.scoring import RewardScorer   # this repository; reads reward_config.json\n"
              "scorer = RewardScorer.from_pretrained(\"<this folder>\")\n"
              "scores = scorer.score(prompts, responses)   # [batch]; each response starts with one space\n```",
    "policy": "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
              "tok = AutoTokenizer.from_pretrained(\"<this folder>\")\n"
              "model = AutoModelForCausalLM.from_pretrained(\"<this folder>\")\n"
              f"prompt = {PROMPT_FORMAT!r}.format(subreddit=..., title=..., post=...)\n```",
}
LIMITS = {
    "sft": "It imitates what Reddit authors wrote as TL;DRs, including jokes and teasers, and can state facts the "
           "post does not contain.",
    "reward": "Its score predicts votes, not quality or truth: it can favour length, tone or agreement, and it has "
              "only seen the subreddits and comment styles of its pairs. Compare its accuracy with the baselines "
              "above before trusting it; do not use it to rank or moderate people's writing.",
    "ppo": "It was optimized against a learned proxy of votes: higher reward model scores need not mean better "
           "summaries (reward over-optimization); judge it with eval-policy's held-out table, not its training reward.",
}


def model_card(model_dir: Path, metrics: Mapping[str, Any], facts: ModelFacts, prov: Provenance) -> ModelCard:
    """The model card of one trained model folder; its numbers are `metrics` (the stage's final metrics)."""
    simulated = prov.source == "sim"
    dataset_id = f"{prov.run_name}-data"  # `publish` replaces it with the dataset's Hub repo id
    license_terms = ({"license": PROJECT_LICENSE} if simulated and facts.base_hub_id is None else
                     {"license": "other", "license_name": "base-model-and-data-terms",
                      "license_link": REDDIT_TERMS["license_link"]})
    data = ModelCardData(
        model_name=f"upvote-rlhf-{prov.run_name}-{facts.kind}",
        library_name="transformers",
        pipeline_tag="text-classification" if facts.kind == "reward" else "text-generation",
        base_model=facts.base_hub_id,
        tags=["upvote-rlhf", "rlhf", "reddit", "tldr", "trl",
              {"sft": "sft", "reward": "reward-model", "ppo": "ppo"}[facts.kind]],
        eval_results=_eval_results(facts.kind, metrics, dataset_id),
        **license_terms,
    )
    rows = _metric_rows(facts.kind, metrics, simulated)
    body = (
        f"# upvote-rlhf {prov.run_name}: {TITLES[facts.kind]}\n\n{WHAT[facts.kind]} Trained by "
        f"`python -m pipelines {prov.stage}` (run `{prov.run_name}`) on data from "
        f"{SOURCE_NAMES.get(prov.source, prov.source)}.\n\n"
        "## Model\n\n"
        f"- Architecture: {facts.architecture}, {_fmt(facts.parameters)} parameters.\n"
        f"- Started from: {facts.base}.\n- Tokenizer: {facts.tokenizer}.\n- Data: {facts.data}\n\n"
        "## Results\n\nFrom this run's final metrics (the stage's `metrics.json`).\n\n"
        + _table(["metric", "value", "what"], rows)
        + "\n\n## How to use\n\n" + USAGE["reward" if facts.kind == "reward" else "policy"]
        + "\n\n## Intended use and limits\n\nResearch on learning from Reddit upvotes (RLHF without human "
        f"labellers); not for deployment. {LIMITS[facts.kind]}"
        + (" Everything it learned comes from a simulated Reddit: it knows nothing about real posts."
           if simulated else " Real Reddit text carries the biases and offensive content of its sources.")
        + "\n\n" + _provenance_section(prov)
    )
    return _render(ModelCard, data, body)


# ----------------------------------------------------------------------------------------------------------
# stage entry points: one call at the end of a stage function
# ----------------------------------------------------------------------------------------------------------
def _architecture(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    return f"{', '.join(config.get('architectures') or ['?'])} ({config.get('model_type', '?')})"


def _tokenizer(cfg: "ExperimentConfig") -> str:
    if cfg.tokenizer.name_or_path:
        return f"`{cfg.tokenizer.name_or_path}`"
    return f"a byte-level BPE of {cfg.tokenizer.vocab_size} tokens trained on this run's texts (build-data)"


def _built_policy(cfg: "ExperimentConfig") -> str:
    if cfg.policy.name_or_path:
        return f"`{cfg.policy.name_or_path}`"
    pretrained = (f", then language-modelled for {cfg.pretrain.steps} steps on this run's post texts (pretrain stage)"
                  if cfg.pretrain.steps else "")
    p = cfg.policy
    return (f"built from config (a GPT-2 with n_layer={p.n_layer}, n_embd={p.n_embd}, n_head={p.n_head}, "
            f"n_positions={p.n_positions}, random init seed {p.seed}){pretrained}")


def _model_facts(cfg: "ExperimentConfig", kind: ModelKind, model_dir: Path, metrics: Mapping[str, Any]) -> ModelFacts:
    run = cfg.run.name
    if kind == "sft":
        hub_id, base = hub_model_id(cfg.policy.name_or_path), _built_policy(cfg)
        data = (f"{_fmt(_count(metrics.get('sft/train_rows')))} training rows of this run's `sft` config "
                f"(`runs/{run}/build-data/sft`).")
    elif kind == "reward":
        hub_id = hub_model_id(cfg.reward.model_name_or_path)
        base = (f"`{cfg.reward.model_name_or_path}`" if cfg.reward.model_name_or_path else
                f"this run's SFT policy (`runs/{run}/sft/model`, itself {_built_policy(cfg)}) with a new scalar head")
        data = (f"{_fmt(_count(metrics.get('rm_train/pairs')))} training pairs from this run's `pairs` config "
                f"(`runs/{run}/build-data/pairs`); evaluated on its test split.")
    else:
        hub_id, base = None, f"this run's SFT policy (`runs/{run}/sft/model`), which is also the KL reference"
        data = (f"prompts of this run's `sft` config (train split), rewarded by this run's reward model "
                f"(`runs/{run}/train-reward/model`).")
    return ModelFacts(kind, hub_id, base, data, _architecture(model_dir), count_parameters(model_dir), _tokenizer(cfg))


DATASET_SECTIONS = ("scrape", "data", "tokenizer")
MODEL_SECTIONS: dict[ModelKind, tuple[str, ...]] = {
    "sft": ("policy", "tokenizer", "pretrain", "sft"),
    "reward": ("policy", "tokenizer", "reward"),
    "ppo": ("ppo", "rl"),
}
MODEL_STAGES: dict[ModelKind, str] = {"sft": "sft", "reward": "train-reward", "ppo": "ppo"}


def save_dataset_card(cfg: "ExperimentConfig", data_dir: Path, commit: str) -> Path:
    """`README.md` of a build-data folder."""
    card = dataset_card(data_dir, Provenance.of(cfg, "build-data", commit, DATASET_SECTIONS))
    card.save(data_dir / CARD_FILE)
    return data_dir / CARD_FILE


def save_model_card(cfg: "ExperimentConfig", kind: ModelKind, model_dir: Path, metrics: Mapping[str, Any],
                    commit: str) -> Path:
    """`README.md` in a saved model's folder."""
    facts = _model_facts(cfg, kind, model_dir, metrics)
    card = model_card(model_dir, metrics, facts, Provenance.of(cfg, MODEL_STAGES[kind], commit, MODEL_SECTIONS[kind]))
    card.save(model_dir / CARD_FILE)
    return model_dir / CARD_FILE


def write_dataset_card(ctx: "Context") -> Path | None:
    """build-data's last step: the dataset card beside `pairs/` and `sft/` (main process only)."""
    return save_dataset_card(ctx.cfg, ctx.out, git_commit()) if ctx.tracker.writes else None


def write_model_card(ctx: "Context", kind: ModelKind, model_dir: Path, metrics: Mapping[str, Any]) -> Path | None:
    """sft / train-reward / ppo's last step: the model card of `model_dir` from the stage's final `metrics`, the
    dict `run_stage` writes to metrics.json (main process only)."""
    return save_model_card(ctx.cfg, kind, model_dir, metrics, git_commit()) if ctx.tracker.writes else None
