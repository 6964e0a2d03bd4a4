"""The model's private copy written again after a cleaner of /tmp removed it
(service/workers/pinned.py)."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from service.workers.pinned import Pinned


def _pinned_then_cleaned(tmp_path: Path) -> tuple[Pinned, Path]:
    """A model's private copy pinned, then its folder removed (a cleaner of /tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="digits-models-", dir=tmp_path))
    model = folder / "model.onnx"
    model.write_bytes(b"the model's bytes")
    pinned = Pinned({"path": str(model), "card_path": None})
    shutil.rmtree(folder)
    return pinned, model


def test_a_removed_copy_is_written_again_in_a_folder_as_private_as_before(tmp_path: Path) -> None:
    """The folder came back 0755 (tempfile.mkdtemp's is 0700): the model readable by all."""
    pinned, model = _pinned_then_cleaned(tmp_path)
    folder = model.parent
    pinned.restore()
    assert model.read_bytes() == b"the model's bytes"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_folder_made_again_by_someone_else_is_neither_used_nor_written(
    tmp_path: Path,
) -> None:
    """A cleaned /tmp is anyone's to write in and the path is on every worker's command
    line: another user could make the folder again with a model of theirs (or a link) in
    it, which the next worker opened. Their folder is refused (it is writable by others
    here, as one made by another user would be to us), before anything is read or written."""
    pinned, model = _pinned_then_cleaned(tmp_path)
    folder = model.parent
    folder.mkdir()
    folder.chmod(0o777)
    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(b"another model")
    model.symlink_to(theirs)
    with pytest.raises(PermissionError, match="made again by another user"):
        pinned.restore()
    assert theirs.read_bytes() == b"another model"
    assert not (folder / "model.partial").exists()
