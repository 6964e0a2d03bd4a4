# syntax=docker/dockerfile:1
# The digits service: ONNX Runtime + FastAPI, no torch, non-root, configured by DIGITS_* env vars.
#
#   docker build -t digits .                      # python:3.12-slim from Docker Hub
#   docker run -p 127.0.0.1:8000:8000 digits
#
# A machine without a registry passes a local base with python3 + venv, e.g.
#   --build-arg BASE_IMAGE=localhost/debian-python:bookworm   (scripts/container-smoke.sh)
ARG BASE_IMAGE=python:3.12-slim

# --- deps: the pinned, hash-checked serving stack in a venv (wheels only: no compilers) ------
FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
COPY requirements/serve.lock /tmp/serve.lock
# --no-deps: the lock is complete; --require-hashes: nothing unpinned or tampered gets in.
# pip itself is not needed to serve; the bytecode pip compiled stays, so a read-only
# container starts without recompiling.
RUN /opt/venv/bin/pip install --no-deps --require-hashes --only-binary=:all: -r /tmp/serve.lock \
    && /opt/venv/bin/python -m pip uninstall -q -y pip setuptools

# --- rootfs: the interpreter, the venv and exactly the libraries they link, nothing else ----
# (deploy/image/rootfs.py: no package manager, perl, locales or docs; parts of packages the
# service never loads pruned; the build fails if a needed library is missing.)
FROM ${BASE_IMAGE} AS rootfs
ARG UID=10001
# binutils strips the debug sections some wheels ship; it stays in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid "${UID}" --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin digits
COPY --from=deps /opt/venv /opt/venv
COPY deploy/image/rootfs.py /tmp/rootfs.py
RUN python3 /tmp/rootfs.py /rootfs /opt/venv

# --- runtime: that filesystem, service/ and models/ ------------------------------------------
FROM scratch AS runtime
ARG UID=10001
LABEL org.opencontainers.image.title="digits" \
      org.opencontainers.image.description="Handwritten-digit classifier: LeNet-5 on ONNX Runtime behind FastAPI" \
      org.opencontainers.image.licenses="MIT"
COPY --from=rootfs /rootfs/ /
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    DIGITS_HOST=0.0.0.0 \
    DIGITS_MODEL_PATH=/app/models/lenet5.onnx \
    DIGITS_GRACEFUL_SHUTDOWN_SECONDS=6 \
    HOME=/tmp
WORKDIR /app
# Root owns the code and model; the service user can only read them.
COPY service/ ./service/
COPY models/ ./models/
RUN ["python", "-m", "compileall", "-q", "service"]
USER ${UID}
# DIGITS_PORT, else PORT (Knative/KServe inject it), else 8000.
EXPOSE 8000
# Readiness, not liveness: healthy means the model is loaded and warmed up (/readyz 200).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % (os.environ.get('DIGITS_PORT') or os.environ.get('PORT') or '8000'), timeout=2)"]
# One process per container: scale with replicas. uvicorn drains requests on SIGTERM, 6 s
# here, so that the drain and the workers' stop (2 s) fit the 10 s a plain `docker stop` or
# `podman stop` waits before SIGKILL (at 10 s a slow upload's stop was killed: exit 137);
# SIGHUP reloads the model file (checked first; README, "Swapping the model"). HOME: ONNX
# Runtime keeps a file there (the service user's /nonexistent: a warning on every start).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
