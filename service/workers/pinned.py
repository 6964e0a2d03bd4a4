"""The bytes of the model files a generation of workers opens, kept to write them again.

The served model is a private copy in a temporary folder (service/repository/staging.py), so
that a worker started later opens the same bytes. A cleaner of /tmp (systemd-tmpfiles,
tmpreaper) may remove it while the service runs; every worker started after that, a
respawn after a crash included, would find no model and fail for good, the service
answering 503 until restarted. The supervisor writes the files again before it starts a
worker.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.repository.staging import write_whole

logger = logging.getLogger(__name__)


class Pinned:
    """A generation's model file and card, as they were when it started."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        self.files: list[tuple[Path, bytes, os.stat_result]] = []  # and its folder, as it was
        for name in (model.get("path"), model.get("card_path")):
            if not name:
                continue
            try:
                path = Path(name)
                self.files.append((path, path.read_bytes(), path.parent.lstat()))
            except OSError:  # the workers fail to open it and say why
                continue

    def restore(self) -> None:
        """Write again each file that is gone (never one that is there: it is the same).
        Raises PermissionError when another user has made its folder again (a cleaned /tmp
        is anyone's to write in, and the path is on every worker's command line): what they
        put there must not be opened, nor written through (a planted link)."""
        for path, data, folder_was in self.files:
            folder = path.parent
            try:
                folder.mkdir(mode=0o700, parents=True)  # owner-only, as tempfile.mkdtemp's
            except FileExistsError:
                _check_same_or_own(folder, folder_was)
            if path.exists():
                continue
            try:
                write_whole(path, data)
            except OSError as exc:
                logger.error("cannot write the model's private copy %s again (%s)", path, exc)
                continue
            logger.warning("wrote %s again: it was removed from the temporary folder", path)


def _check_same_or_own(folder: Path, was: os.stat_result) -> None:
    """``folder`` is the one the files were read from (a new folder may reuse its inode:
    its owner and mode must match too), or a real folder of this process's user that no
    one else may write to; else PermissionError."""
    now = folder.lstat()
    if _signature(now) == _signature(was):
        return
    owned = now.st_uid == os.getuid() and not now.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not (stat.S_ISDIR(now.st_mode) and owned):
        raise PermissionError(
            f"{folder} was made again by another user (uid {now.st_uid}, "
            f"{stat.filemode(now.st_mode)}): no worker opens a model from it"
        )


def _signature(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_uid, info.st_mode
