# Two entry points, each working on a fresh machine with only python3 and pip.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-gpu lint bench clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

# On a machine with an NVIDIA GPU: JAX with CUDA, then the tests marked `gpu` (GPU vs CPU/numpy).
test-gpu: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,cuda]"
	JAX_PLATFORMS=cuda,cpu $(BIN)/python -m pytest -q -m gpu tests

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_io.py
	$(BIN)/python benchmarks/bench_tokens.py
	$(BIN)/python benchmarks/bench_model.py --quick

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
