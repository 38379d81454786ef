"""The report of a run without gold (dumps, reddit.com): gold-only parts skipped with one note, the rest shown."""

import json

import yaml

from pipelines.report import write_report


def stage(root, name, metrics, source="dumps", **files):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"scrape": {"source": source}}))
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "DONE.json").write_text(json.dumps({"stage": name, "seconds": 1.0, "seed": 0, "config": "configs/dumps.yaml",
                                             "commit": "abc"}))
    for fname, content in files.items():
        (d / fname.replace("__", ".")).write_text(json.dumps(content))


def test_dumps_run_report_names_what_it_skips(tmp_path):
    root = tmp_path / "dumps"
    stage(root, "scrape", {"scrape/files": 2, "scrape/lines_read": 1200, "scrape/posts_kept": 300,
                           "scrape/comments_kept": 800, "scrape/dropped/deleted_post": 4})
    card = {"splits": {"pairs": {"train": 10, "validation": 2, "test": 2}, "sft": {"train": 5, "validation": 1, "test": 1}},
            "drops": {"sft/no_author_tldr": 290}, "gold_agreement": {}, "bayes_ceiling": {}}
    stage(root, "build-data", {}, data_card__json=card)
    rows = [{"method": "SFT", "rm_score": 0.1, "kl": 0.0, "rouge_l": 0.21},
            {"method": "PPO step 40", "rm_score": 0.5, "kl": 1.2, "rouge_l": 0.19}]
    stage(root, "eval-policy", {}, policy_table__json=rows)
    text = write_report(root).read_text()
    assert "Source `dumps`" in text and "gold-only parts" in text
    assert "n/a posts" not in text
    assert "Read 1200 dump lines from 2 files; kept 300 posts and 800 comments" in text
    assert "deleted_post 4" in text
    assert "Stage `ppo` has not run" in text and "Stage `sft` has not run" in text
    assert "Does RL beat SFT on gold?" not in text
    assert "| method | rm_score | kl |" in text and "gold_win_rate" not in text  # no gold columns
    assert "compared by the reward model" in text
