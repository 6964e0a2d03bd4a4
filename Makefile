# One entry point for people and CI. Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test train bench lint image clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Serving needs no torch: onnxruntime only.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[serve,client]'
	touch $@

# torch is installed first and exactly: a looser spec can pull a multi-GB CUDA build.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed  ## start the service on the shipped model
	$(BIN)/python -m service

test: $(VENV)/.dev-installed  ## run the test suite
	$(BIN)/python -m pytest

train: $(VENV)/.dev-installed  ## retrain and export models/lenet5.onnx
	$(BIN)/python -m training train --data-dir $${DIGITS_DATA_DIR:-../shared/data/mnist}

bench: $(VENV)/.dev-installed  ## throughput table vs its own ceilings (needs wrk), ~2 min
	$(BIN)/python -m bench

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
