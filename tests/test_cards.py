"""Hub cards (pipelines/cards.py) on small inputs: they load with huggingface_hub's card classes, their metadata
is what the Hub and `datasets` read (configs that load, split sizes, size bucket, license), and they carry the
numbers they were given. The cards of a real run are checked in tests/test_end_to_end.py."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, ModelCard
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from data.card import CardConfig, build_card
from data.pairs import PAIR_FEATURES
from pipelines.cards import (
    count_parameters,
    hub_model_id,
    save_dataset_card,
    save_model_card,
    size_category,
)
from pipelines.config import ExperimentConfig

RESOURCES = Path(datasets.__file__).parent / "utils" / "resources"
SFT_FEATURES = datasets.Features({
    "post_id": datasets.Value("string"), "subreddit": datasets.Value("string"), "prompt": datasets.Value("string"),
    "completion": datasets.Value("string"), "post_text": datasets.Value("string"), "score": datasets.Value("int64"),
    "created_utc": datasets.Value("float64"),
})
SIZES = {"pairs": {"train": 7, "validation": 2, "test": 3}, "sft": {"train": 4, "validation": 1, "test": 2}}


def _pair(i: int) -> dict:
    return {"pair_id": f"p{i}", "post_id": f"t{i}", "subreddit": "tifu", "strategy": "same_post",
            "prompt": f"SUBREDDIT: r/tifu\n\nTITLE: t{i}\n\nPOST: story {i}\n\nTL;DR:", "chosen": " good",
            "rejected": " bad", "chosen_id": f"c{i}", "rejected_id": f"r{i}", "chosen_score": 30, "rejected_score": 5,
            "score_ratio": 6.0, "margin": 0.0, "chosen_created_utc": 2.0, "rejected_created_utc": 1.0,
            "post_text": f"story {i}"}


def _sft(i: int) -> dict:
    return {"post_id": f"t{i}", "subreddit": "tifu", "prompt": f"POST {i}\n\nTL;DR:", "completion": " short",
            "post_text": f"story {i}", "score": 40, "created_utc": 1.0}


def _cfg(source: str = "sim", **scrape: object) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"run": {"name": "small", "seed": 7}, "scrape": {"source": source, **scrape},
                                            "data": {"split": {"salt": "split-salt-kept"}}})


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    """A build-data folder as the stage writes it (save_to_disk configs and data_card.json), plus the
    `cache-*.arrow` file a later stage's shuffle leaves in a split folder."""
    out = tmp_path / "build-data"
    made = {}
    for name, features, row in (("pairs", PAIR_FEATURES, _pair), ("sft", SFT_FEATURES, _sft)):
        start = 0
        splits = {}
        for split, n in SIZES[name].items():
            splits[split] = datasets.Dataset.from_list([row(start + k) for k in range(n)], features=features)
            start += n
        made[name] = datasets.DatasetDict(splits)
        made[name].save_to_disk(str(out / name))
    card = build_card(cfg=CardConfig(), config={}, records={"posts": 20, "comments": 90, "prepared_posts": 19},
                      drops={"same_post/pair_score_ratio_below_min": 11, "sft/no_author_tldr": 3}, pairs=made["pairs"],
                      cross_post=None, sft=made["sft"], split_info={"rule": "hash", "time_cutoff": None})
    (out / "data_card.json").write_text(json.dumps(card))
    datasets.load_from_disk(str(out / "pairs"))["train"].shuffle(seed=0).flatten_indices()  # leaves cache-*.arrow
    assert list((out / "pairs" / "train").glob("cache-*.arrow")), "the fixture should hold a cache file"
    return out


def test_dataset_card_metadata_loads_and_matches_the_data(data_dir: Path, tmp_path: Path) -> None:
    path = save_dataset_card(_cfg(), data_dir, "abc123")
    card = DatasetCard.load(path, ignore_metadata_errors=False)
    meta = card.data.to_dict()
    # The metadata values the Hub knows (the lists `datasets` ships) and the license of synthetic data.
    assert meta["size_categories"] == ["n<1K"]
    assert set(meta["size_categories"]) <= set(json.loads((RESOURCES / "size_categories.json").read_text()))
    creators = json.loads((RESOURCES / "creators.json").read_text())
    assert set(meta["annotations_creators"]) <= set(creators["annotations"])
    assert set(meta["language_creators"]) <= set(creators["language"])
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"] and "synthetic" in meta["tags"]
    # configs: valid for `datasets`, and every split loads with the row count the dataset_info says.
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert set(configs) == {"pairs", "sft"}
    infos = {info["config_name"]: {s["name"]: s["num_examples"] for s in info["splits"]} for info in meta["dataset_info"]}
    assert infos == SIZES
    for name in SIZES:
        loaded = datasets.load_dataset(str(data_dir), name, cache_dir=str(tmp_path / "hf-cache"))
        assert {s: len(loaded[s]) for s in loaded} == SIZES[name]
    # The body: the rules' counts, the drops, provenance.
    assert "`same_post` (on), 12 pairs" in card.text
    assert "| `same_post/pair_score_ratio_below_min` | 11 |" in card.text
    assert "| small | `build-data` | 7 | `abc123` | sim |" in card.text


def test_real_reddit_data_names_reddit_terms_and_hides_the_author_salt(data_dir: Path) -> None:
    cfg = _cfg("reddit", reddit={"subreddits": ["tifu"], "salt": "author-salt-0xdeadbeef"})
    card = DatasetCard.load(save_dataset_card(cfg, data_dir, "abc123"))
    assert card.data.license == "other" and card.data.license_name == "reddit-user-agreement"
    assert card.data.license_link.startswith("https://")
    assert card.data.annotations_creators == ["crowdsourced"] and "synthetic" not in card.data.tags
    text = str(card)
    assert "author-salt-0xdeadbeef" not in text  # with the salt, author hashes could be undone
    assert "split-salt-kept" in text  # the split salt is needed to reproduce the splits
    assert "reddit.com through its official API (praw) (subreddits: tifu)" in text


def test_size_category_buckets() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 100_000, 2_000_000, 10**13)] == \
        ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "n>1T"]


def test_hub_model_id_tells_hub_names_from_local_folders(tmp_path: Path) -> None:
    assert hub_model_id("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"
    assert hub_model_id(str(tmp_path)) is None and hub_model_id(None) is None
    assert hub_model_id("not a/valid//id") is None


def _tiny(cls, out: Path, **extra: object) -> int:
    torch.manual_seed(0)
    model = cls(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2, **extra))
    model.save_pretrained(out)
    return model.num_parameters()


RM_METRICS = {"rm/accuracy": 0.6234, "rm/accuracy_ci_low": 0.5512, "rm/accuracy_ci_high": 0.6901, "rm/n_pairs": 180.0,
              "rm/baseline/longer_wins": 0.5711, "rm/baseline/later_wins": 0.4422, "rm/baseline/random": 0.5055,
              "rm/ece": 0.0312, "rm/gold/accuracy": 0.7, "rm/bayes_ceiling": 0.8123, "rm_train/pairs": 900,
              "rm_train/steps": 40}


def test_reward_model_card_carries_accuracy_ci_and_baselines(tmp_path: Path) -> None:
    n_params = _tiny(GPT2ForSequenceClassification, tmp_path / "rm", num_labels=1, pad_token_id=0)
    card = ModelCard.load(save_model_card(_cfg(), "reward", tmp_path / "rm", RM_METRICS, "abc123"),
                          ignore_metadata_errors=False)
    (result,) = card.data.eval_results
    assert result.metric_type == "accuracy" and result.metric_value == RM_METRICS["rm/accuracy"]
    assert result.dataset_split == "test" and result.dataset_config == "pairs"
    assert card.data.pipeline_tag == "text-classification" and card.data.base_model is None
    text = card.text
    assert "| held-out pairwise accuracy | 0.623 [0.551, 0.690] | test pairs (n=180), 95% Wilson CI |" in text
    assert "| baseline: longer wins | 0.571 |" in text and "| Bayes ceiling | 0.812 |" in text
    assert f"GPT2ForSequenceClassification (gpt2), {n_params:,} parameters" in text
    assert count_parameters(tmp_path / "rm") == n_params
    assert "this run's SFT policy" in text and "| small | `train-reward` | 7 | `abc123` | sim |" in text


def test_policy_cards_carry_sft_loss_and_ppo_score(tmp_path: Path) -> None:
    _tiny(GPT2LMHeadModel, tmp_path / "sft")
    sft = {"sft/eval/loss": 2.71828, "sft/eval/mean_token_accuracy": 0.31, "sft/train/train_loss": 3.1,
           "sft/train_rows": 1200, "sft/steps": 300}
    card = ModelCard.load(save_model_card(_cfg(), "sft", tmp_path / "sft", sft, "abc123"))
    assert card.data.eval_results[0].metric_value == sft["sft/eval/loss"]
    assert "| eval loss | 2.718 |" in card.text and "1,200 training rows" in card.text

    _tiny(GPT2LMHeadModel, tmp_path / "ppo")
    ppo = {"objective/scores": 0.4567, "objective/raw_scores": 0.5, "objective/kl": 3.2109,
           "objective/response_length": 21.0, "objective/no_eos_rate": 0.05, "ppo/updates": 60, "ppo/batch_size": 64}
    card = ModelCard.load(save_model_card(_cfg(), "ppo", tmp_path / "ppo", ppo, "abc123"))
    assert card.data.eval_results is None  # training rollouts are not a held-out evaluation
    assert "| score | 0.457 |" in card.text and "| KL to the SFT policy | 3.211 |" in card.text
    assert "| PPO updates | 60 | x 64 episodes |" in card.text


def test_a_hub_base_model_is_named_in_the_metadata(tmp_path: Path) -> None:
    _tiny(GPT2LMHeadModel, tmp_path / "sft")
    cfg = _cfg().model_copy(update={"policy": _cfg().policy.model_copy(update={"name_or_path": "EleutherAI/pythia-70m"})})
    card = ModelCard.load(save_model_card(cfg, "sft", tmp_path / "sft", {}, "abc123"))
    assert card.data.base_model == "EleutherAI/pythia-70m"
    assert card.data.license == "other"  # the base model's terms apply, not only this project's
    assert card.data.eval_results is None and "| eval loss | n/a |" in card.text
