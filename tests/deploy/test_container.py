"""Dockerfile, .dockerignore and the runtime lock (the built image: scripts/container-smoke.sh)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.workers.supervisor import SHUTDOWN_GRACE_S
from tests.conftest import REPO_ROOT
from tests.deploy.tools import DOCKERFILE, venv_tool

LOCK = REPO_ROOT / "requirements" / "serve.lock"
ENGINE_STOP_TIMEOUT_S = 10.0  # docker stop's and podman stop's default wait before SIGKILL


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the shipped image is made of."""
    steps = instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [venv_tool("hadolint"), "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_sloppy_dockerfile(tmp_path: Path) -> None:
    """Proves the check above can fail: unpinned apt installs and `latest` are warnings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [venv_tool("hadolint"), "--failure-threshold", "warning", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3008" in result.stdout


def test_base_image_is_a_build_arg_defaulting_to_official_slim_python() -> None:
    steps = instructions(DOCKERFILE.read_text())
    assert ("ARG", "BASE_IMAGE=python:3.12-slim") in steps
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) >= 3, "multi-stage: dependencies and the filesystem are built apart"
    assert all(args.startswith("${BASE_IMAGE}") for args in froms[:-1])
    # The runtime holds only the assembled filesystem (deploy/image/rootfs.py), nothing of
    # the base it came from: no package manager, compilers or shells beyond sh.
    assert froms[-1] == "scratch AS runtime"


def test_runtime_stage_is_non_root_with_readiness_healthcheck() -> None:
    stage = runtime_stage()
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users and users[-1] not in {"0", "root"}
    healthcheck = " ".join(args for keyword, args in stage if keyword == "HEALTHCHECK")
    assert "/readyz" in healthcheck and "urllib" in healthcheck
    assert ("EXPOSE", "8000") in stage
    env = " ".join(args for keyword, args in stage if keyword == "ENV")
    # DIGITS_PORT stays unset: PORT (Knative, KServe) then 8000 apply, and the probe follows.
    assert "DIGITS_HOST=0.0.0.0" in env and "DIGITS_PORT" not in env
    assert "os.environ.get('PORT')" in healthcheck
    assert ("CMD", '["python", "-m", "service"]') in stage


def test_a_plain_stop_leaves_the_drain_and_the_workers_time() -> None:
    """`docker stop` and `podman stop` wait 10 s, then SIGKILL: with the service's 10 s
    drain, a stop during a slow upload was killed (exit 137, the client's pipe broken) where
    the README promises a drain and exit 0."""
    env = " ".join(args for keyword, args in runtime_stage() if keyword == "ENV")
    found = re.search(r"DIGITS_GRACEFUL_SHUTDOWN_SECONDS=([\d.]+)", env)
    assert found is not None, env
    assert float(found.group(1)) + SHUTDOWN_GRACE_S < ENGINE_STOP_TIMEOUT_S


def test_runtime_stage_copies_only_the_assembled_filesystem_service_and_models() -> None:
    copies = [args for keyword, args in runtime_stage() if keyword == "COPY"]
    sources = sorted(args.split()[-2] for args in copies)
    assert sources == ["/rootfs/", "models/", "service/"], copies
    commands = " ".join(args for _, args in instructions(DOCKERFILE.read_text()))
    assert "torch" not in commands.lower()


def test_dockerignore_lets_in_only_what_the_image_copies() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "exclude everything first"
    allowed = sorted(line[1:] for line in lines if line.startswith("!"))
    assert allowed == ["deploy/image/rootfs.py", "models/", "requirements/serve.lock", "service/"]


def _lock_pins() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for every pin of the lock file."""
    pins: dict[str, tuple[str, int]] = {}
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            name = canonicalize_name(match.group(1))
            pins[name] = (match.group(2), line.count("--hash=sha256:"))
    return pins


def _serve_requirements() -> list[Requirement]:
    """The `serve` extra with its self-references (digits[api]) expanded."""
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    optional = extras["optional-dependencies"]
    pending, found = ["serve"], []
    while pending:
        for spec in optional[pending.pop()]:
            requirement = Requirement(spec)
            if canonicalize_name(requirement.name) == "digits":
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found + [Requirement(spec) for spec in extras["dependencies"]]


def test_lock_pins_every_serving_dependency_with_hashes() -> None:
    pins = _lock_pins()
    requirements = _serve_requirements()
    assert len(requirements) >= 8
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in the serve extra but not in {LOCK.name}: run make lock"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} does not satisfy {requirement.specifier}: run make lock"
        )
        assert hashes >= 1, f"{name} has no --hash in {LOCK.name}"
    assert all(hashes >= 1 for _, hashes in pins.values())


@pytest.mark.parametrize(
    "heavy", ["torch", "onnx", "matplotlib", "pytest", "websockets", "watchfiles", "pyyaml"]
)
def test_lock_keeps_training_and_test_tools_out(heavy: str) -> None:
    assert heavy not in _lock_pins()


def _third_party_imports(package: Path) -> set[str]:
    """Top-level modules imported anywhere in `package`, minus the stdlib and itself."""
    modules: set[str] = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {package.name}


def test_lock_provides_every_module_the_service_imports() -> None:
    """The image installs only the lock: an import missing from it crashes the container."""
    pins = _lock_pins()
    providers = importlib.metadata.packages_distributions()
    imports = _third_party_imports(REPO_ROOT / "service")
    assert {"fastapi", "onnxruntime", "numpy"} <= imports
    for module in sorted(imports):
        distributions = {canonicalize_name(name) for name in providers.get(module, [])}
        assert distributions, f"service/ imports {module}, which no installed package provides"
        assert distributions & pins.keys(), (
            f"service/ imports {module} ({sorted(distributions)}), absent from {LOCK.name}: "
            "add it to the api extra in pyproject.toml, then run make lock"
        )
