# One entry point for people and CI. Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test train bench lint image lock container-smoke clean

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

test: $(VENV)/.dev-installed  ## install missing test tools (wrk, prometheus, chromium, fonts), run the tests
	bash scripts/test-tools.sh
	$(BIN)/python -m pytest

train: $(VENV)/.dev-installed  ## retrain and export models/lenet5.onnx
	bash scripts/test-tools.sh --fonts
	$(BIN)/python -m training train --data-dir $${DIGITS_DATA_DIR:-../shared/data/mnist}

bench: $(VENV)/.dev-installed  ## throughput table vs its own ceilings (needs wrk), ~2 min
	$(BIN)/python -m bench

lint: $(VENV)/.dev-installed  ## ruff, ruff format, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint --failure-threshold warning Dockerfile

# The runtime image. ENGINE: docker when its engine answers, else podman. A machine without a
# registry passes a local base (BASE_IMAGE=localhost/debian-python:bookworm, made by
# scripts/container-smoke.sh).
IMAGE       ?= localhost/digits:latest
BASE_IMAGE  ?= python:3.12-slim
ENGINE      ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
image:  ## build the runtime image (no torch, non-root) as $(IMAGE)
	if [ "$(ENGINE)" = podman ]; then . scripts/podman-env.sh; fi; \
	$(ENGINE) build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# Build the real Dockerfile with podman, run it, check health/predictions/metrics/user (CI).
container-smoke:
	bash scripts/container-smoke.sh

# requirements/serve.lock: the `serve` extra pinned with hashes, for the image. Keeps current
# pins that still fit; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest.
LOCK_FLAGS ?=
lock: $(VENV)/.dev-installed  ## regenerate requirements/serve.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra serve --universal --python-version 3.11 \
		--generate-hashes --custom-compile-command "make lock" --quiet $(LOCK_FLAGS) \
		-o requirements/serve.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
