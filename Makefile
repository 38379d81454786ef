# upvote-rlhf: every target creates .venv first, so `make demo` and `make test` work on a fresh clone.
# Stage targets take CONFIG=configs/X.yaml and ARGS="dotted.key=value ..." (see README).

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
CONFIG  ?= configs/demo.yaml
SOURCE  ?=
ARGS    ?=
STAMP   := $(VENV)/.installed
# torch is pinned to the CPU wheel that lies on disk here; a looser spec would download a CUDA build.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test demo scrape sim-reddit build-data pretrain sft train-reward eval-reward ppo eval-policy steer study report publish bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(FIND_LINKS) torch==2.13.0
	$(PY) -m pip install -q $(FIND_LINKS) -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m pipelines demo --config $(CONFIG) $(ARGS)

sim-reddit: setup
	$(PY) -m pipelines sim-reddit --config $(CONFIG) $(ARGS)

# SOURCE defaults to the config's own scrape.source (sim for configs/demo.yaml).
scrape: setup
	$(PY) -m pipelines scrape --config $(CONFIG) $(if $(SOURCE),scrape.source=$(SOURCE),) $(ARGS)

build-data: setup
	$(PY) -m pipelines build-data --config $(CONFIG) $(ARGS)

# A from-scratch policy is pretrained first (the stand-in for a hub checkpoint; skipped once done or when
# pretrain.steps is 0), so `make sft` after `make scrape` works on its own.
pretrain: setup
	$(PY) -m pipelines pretrain --config $(CONFIG) $(ARGS)

sft: pretrain
	$(PY) -m pipelines sft --config $(CONFIG) $(ARGS)

train-reward: setup
	$(PY) -m pipelines train-reward --config $(CONFIG) $(ARGS)

eval-reward: setup
	$(PY) -m pipelines eval-reward --config $(CONFIG) $(ARGS)

ppo: setup
	$(PY) -m pipelines ppo --config $(CONFIG) $(ARGS)

eval-policy: setup
	$(PY) -m pipelines eval-policy --config $(CONFIG) $(ARGS)

steer: setup
	$(PY) -m pipelines steer --config $(CONFIG) $(ARGS)

# The headline claims over seeds (study.seeds, default 0 1 2): train-reward, ppo and eval-policy again per seed
# from the run's own data build and SFT (so `make demo`, or at least `make sft`, first), then the report cites
# the spread. ARGS="study.redo_sft=true" repeats SFT per seed too, "study.steer=true" steering.
study: setup
	$(PY) -m pipelines study --config $(CONFIG) $(ARGS)
	$(PY) -m pipelines report --config $(CONFIG) $(ARGS)

report: setup
	$(PY) -m pipelines report --config $(CONFIG) $(ARGS)

# Push the run's dataset and models, with their cards, to the Hugging Face Hub: needs HF_TOKEN (or `hf auth login`)
# and ARGS="publish.repo_id=<user-or-org>/<name>"; the only target that goes online (HF_HUB_OFFLINE=0).
publish: setup
	HF_HUB_OFFLINE=0 $(PY) -m pipelines publish --config $(CONFIG) $(ARGS)

bench: setup
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf runs
