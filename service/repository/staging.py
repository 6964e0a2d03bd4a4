"""Private copies of the model files being served, so a worker always opens the bytes its
generation was checked with.

A worker that dies is respawned and opens its model file again. If that were the configured
path, an operator who had just copied a new file there (before the reload that checks it)
would get one worker on the new model among workers on the old one. So each served file is
copied, under its SHA-256, into a directory only this process writes, and workers open the
copy. Copies are deleted once no generation uses them, the directory at shutdown.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from service.contract import ModelLoadError, ModelSpec


class Staging:
    """A private directory of model files named by their SHA-256."""

    def __init__(self) -> None:
        try:
            self.directory = Path(tempfile.mkdtemp(prefix="digits-models-"))
        except OSError as exc:
            raise ModelLoadError(
                f"no writable temporary directory for the served model's private copy ({exc}); "
                "mount a tmpfs at /tmp or point TMPDIR at a writable directory"
            ) from exc

    def pin(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` with its model (and card, if any) copied here. Blocking file I/O."""
        source = Path(spec.path)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"model file not found or unreadable: {source} ({exc})") from exc
        card = Path(spec.card_path) if spec.card_path else None
        return self.store(data, spec, card if card is not None and card.is_file() else None)

    def store(self, data: bytes, spec: ModelSpec, card: Path | None = None) -> ModelSpec:
        """``data`` written here as the model of ``spec`` (its card copied beside it). Raises
        OSError when it cannot be written (a full disk), leaving no part of it behind."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.directory / f"{digest}.onnx"
        if not path.exists():
            write_whole(path, data)
        card_path = None
        if card is not None:
            card_path = self.directory / f"{digest}.json"
            shutil.copyfile(card, card_path)
        # The same options (threads, the not-a-digit setting) for the copy's file and card.
        return replace(spec, path=str(path), card_path=str(card_path) if card_path else None)

    def release(self, spec: ModelSpec, keep: ModelSpec) -> None:
        """Delete the copies of ``spec`` unless ``keep`` (the one serving now) uses them."""
        for name in (spec.path, spec.card_path):
            if name and name not in (keep.path, keep.card_path):
                Path(name).unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def write_whole(path: Path, data: bytes) -> None:
    """``data`` at ``path`` under a temporary name, then renamed: a reader (a worker, training
    reading corrections) never opens half a file. Raises OSError when it cannot be written (a
    full disk), leaving no part behind."""
    partial = path.with_suffix(".partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
