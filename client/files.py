"""Which files to send: the paths given, folders searched recursively for images."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# The formats the service accepts by default (DIGITS_ALLOWED_IMAGE_FORMATS). A file named
# explicitly is sent whatever its name: the service, not the extension, decides.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


class NoSuchPath(Exception):
    """A path given on the command line does not exist."""


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def images_in(folder: Path) -> list[Path]:
    """Entries under ``folder`` at any depth named like images, sorted; hidden files and
    folders skipped. Any such entry but a folder is kept, not only regular files: a named
    pipe, a device or a broken symlink then fails its own row, as it does when named, instead
    of vanishing from the run without a word (client.api neither waits on a pipe nor reads
    a device past its MAX_FILE_BYTES)."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and not path.is_dir()  # False, not an error, for a broken or looping symlink
        and not _is_hidden(path, folder)
    )


def collect(paths: Iterable[Path]) -> list[Path]:
    """Files to send, in the order given, each once; raises NoSuchPath for a name that is not
    there at all (a typo is a usage error, a link to nothing is a file that cannot be read)."""
    found: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            candidates = images_in(path)
        elif path.exists() or path.is_symlink():
            candidates = [path]  # a broken link fails its own row, as in a folder scan
        else:
            raise NoSuchPath(f"no such file or folder: {path}")
        for candidate in candidates:
            # Not Path.resolve: it raises on a symlink loop, which must fail its own row.
            key = Path(os.path.realpath(candidate))
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found
