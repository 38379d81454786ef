"""`python -m pipelines build-data`: records -> tokenizer, preference pairs, SFT rows and the data card.

Reads `runs/<name>/scrape/records`, writes `runs/<name>/build-data/{tokenizer,pairs,sft,data_card.*}`.
The tokenizer is trained here on the scraped corpus when no hub tokenizer is configured, because the
prompt budget of pairs and SFT rows is counted in its tokens.
"""

from __future__ import annotations

from pathlib import Path
from data.empty_output import check_not_empty
from data.shards import load_records, shard_paths
from data.sim.pairs import sim_bayes_fn
from data.sim.gold import gold_score
from pipelines.build import build_datasets
from pipelines.cards import write_dataset_card
from pipelines.config import ExperimentConfig
from pipelines.stages import Context, register, sim_world
from policy.models import load_tokenizer, train_tokenizer


def corpus_texts(records_dir: Path, limit: int) -> list[str]:
    """Titles, post bodies and comment bodies: the text the tokenizer should compress well."""
    texts: list[str] = []
    for row in load_records(records_dir, "posts"):
        texts.append(f"SUBREDDIT: r/{row['subreddit']}\n\nTITLE: {row['title']}\n\nPOST: {row['selftext']}\n\nTL;DR:")
        if len(texts) >= limit:
            return texts
    if shard_paths(records_dir, "comments"):
        for row in load_records(records_dir, "comments"):
            texts.append(row["body"])
            if len(texts) >= limit:
                break
    return texts


def tokenizer_for(cfg: ExperimentConfig, records_dir: Path, out: Path):
    """The configured hub tokenizer, or a BPE trained on the corpus (saved to `out`)."""
    if cfg.tokenizer.name_or_path:
        tok = load_tokenizer(cfg.tokenizer.name_or_path)
    else:
        texts = corpus_texts(records_dir, cfg.tokenizer.max_training_texts)
        tok = train_tokenizer(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
    tok.save_pretrained(str(out))
    return tok


@register("build-data", "Train the tokenizer, build preference pairs, SFT rows and the data card from scraped records.")
def build_data(ctx: Context) -> dict:
    cfg = ctx.cfg
    records = ctx.stage_path("scrape") / "records"
    tok = tokenizer_for(cfg, records, ctx.out / "tokenizer")
    simulated = cfg.scrape.source == "sim"
    world = sim_world(cfg) if simulated else None
    result = build_datasets(
        records,
        ctx.out,
        cfg.data,
        count_tokens=tok,
        gold_fn=gold_score if simulated else None,
        bayes_fn=sim_bayes_fn(world, cfg.data.pairs) if world else None,
        log=ctx.tracker.log,
    )
    print((ctx.out / "data_card.md").read_text())
    # after the card, which lists every drop: nothing kept is an error, one empty kind a warning
    for warning in check_not_empty(result.card, sft_enabled=cfg.data.sft.enabled):
        print(f"[build-data] WARNING: {warning}")
    ctx.tracker.artifact(f"{cfg.run.name}-pairs", "dataset", ctx.out / "pairs")
    ctx.tracker.artifact(f"{cfg.run.name}-sft-rows", "dataset", ctx.out / "sft")
    metrics = {f"data/{k}": v for k, v in result.card["summary"].items()}
    metrics["data/tokenizer_vocab"] = len(tok)
    write_dataset_card(ctx)
    return metrics
