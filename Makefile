# One entry point for people and CI. Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test train evaluate bench lint image lock container-smoke clean

# Debian and Ubuntu ship venv apart from Python: a failed venv is removed, not half kept.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "cannot create $(VENV): on Debian/Ubuntu, apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install -q --upgrade pip

# Serving needs no torch: onnxruntime only.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[serve,client]'
	touch $@

# torch, installed first and exactly, as its CPU build. On Linux, PyPI's torch wheel bundles
# CUDA (gigabytes); PyTorch's CPU index has the +cpu build, which pip prefers to PyPI's for the
# same version. Where pip's own configuration already offers the +cpu wheel without an index
# (a find-links folder, as on our CI machines), that is used and the index is not asked.
# Override with a mirror of the CPU index, or TORCH_INDEX_URL= to use pip's configuration alone:
#   make test TORCH_INDEX_URL=https://pypi.example.internal/whl/cpu
TORCH_VERSION   ?= 2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?= $(shell $(PYTHON) -m pip install --dry-run --quiet --no-index --no-deps \
	--ignore-installed 'torch==$(TORCH_VERSION)+cpu' >/dev/null 2>&1 || echo $(TORCH_CPU_INDEX))
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed  ## start the service on the shipped model
	$(BIN)/python -m service

# The suite in TEST_WORKERS processes (pytest-xdist), a test file each at a time: on CI's two
# cores most tests wait for servers, sockets and timeouts, and two at once take 7 minutes
# instead of 11 (docs/performance.md, "The test suite's time").
TEST_WORKERS ?= 2
test: $(VENV)/.dev-installed  ## install missing test tools (wrk, prometheus, chromium, curl, fonts), run the tests
	bash scripts/test-tools.sh
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

train: $(VENV)/.dev-installed  ## retrain and export models/lenet5.onnx
	bash scripts/test-tools.sh --fonts
	$(BIN)/python -m training train --data-dir $${DIGITS_DATA_DIR:-../shared/data/mnist}

MODEL ?= models/lenet5.onnx
evaluate: $(VENV)/.dev-installed  ## MNIST test accuracy of $(MODEL) with ONNX Runtime
	$(BIN)/python -m training evaluate --model $(MODEL) --data-dir $${DIGITS_DATA_DIR:-../shared/data/mnist}

bench: $(VENV)/.dev-installed  ## throughput table vs its own ceilings (needs wrk), ~2 min
	$(BIN)/python -m bench

lint: $(VENV)/.dev-installed  ## ruff, ruff format, mypy, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
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

# Build the real Dockerfile with podman, run it, check health/predictions/metrics/user, then
# run docker-compose.yml's api service with podman-compose (from the dev extra) (CI).
container-smoke: $(VENV)/.dev-installed
	PODMAN_COMPOSE=$(BIN)/podman-compose bash scripts/container-smoke.sh

# requirements/serve.lock: the `serve` extra pinned with hashes, for the image. Keeps current
# pins that still fit; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest.
LOCK_FLAGS ?=
lock: $(VENV)/.dev-installed  ## regenerate requirements/serve.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra serve --universal --python-version 3.11 \
		--generate-hashes --custom-compile-command "make lock" --quiet $(LOCK_FLAGS) \
		-o requirements/serve.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
