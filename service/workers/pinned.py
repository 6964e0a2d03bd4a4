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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.repository.staging import write_whole

logger = logging.getLogger(__name__)


class Pinned:
    """A generation's model file and card, as they were when it started."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        self.files: list[tuple[Path, bytes]] = []
        for name in (model.get("path"), model.get("card_path")):
            if not name:
                continue
            try:
                self.files.append((Path(name), Path(name).read_bytes()))
            except OSError:  # the workers fail to open it and say why
                continue

    def restore(self) -> None:
        """Write again each file that is gone (never one that is there: it is the same)."""
        for path, data in self.files:
            if path.exists():
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_whole(path, data)
            except OSError as exc:
                logger.error("cannot write the model's private copy %s again (%s)", path, exc)
                continue
            logger.warning("wrote %s again: it was removed from the temporary folder", path)
